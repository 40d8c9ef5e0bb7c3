"""Command line of ``train_contrastive.py``: a config file, ``key=value`` overrides, ``--resume``."""

from __future__ import annotations

import argparse
import sys

from seisbind.training.checkpointing import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_contrastive.py",
        description="Contrastive training of the seisbind joint model (one process, or under `accelerate launch`).",
        epilog="Any config key can be overridden: key=value (YAML values), e.g. max_steps=200 lr=3e-4 "
               "model_overrides.image.img_size=32. Run with --show-config to print the resolved config.",
    )
    parser.add_argument("--config", help="YAML file of train config keys (see configs/*.yaml)")
    parser.add_argument("--resume", help="'latest' (the newest checkpoint that verifies) or a checkpoint folder")
    parser.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import yaml

    from seisbind.training.config import load_config

    try:
        overrides = list(args.overrides) + ([f"resume={args.resume}"] if args.resume else [])
        config = load_config(args.config, overrides)
        if args.show_config:
            print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
            return 0
        from seisbind.training.trainer import TrainingDiverged, train

        try:
            result = train(config)
        except TrainingDiverged as err:
            print(f"train_contrastive.py: {err}", file=sys.stderr)
            return 1
    except (ValueError, FileNotFoundError) as err:  # CheckpointError is a ValueError
        kind = "checkpoint error" if isinstance(err, CheckpointError) else "error"
        print(f"train_contrastive.py: {kind}: {err}", file=sys.stderr)
        return 2
    if result.metrics and result.main_process:
        m = result.metrics
        print(f"done: step {result.step}, loss {result.loss:.4f}, validation recall@1 (waveform -> image) "
              f"{m['wave_to_image_r1']:.3f} over {int(m['gallery_size'])} geologies (chance {m['chance_r1']:.3f}); "
              f"best {result.best_metric:.3f} at step {result.best_step}, in {result.output_dir}/best-model")
    return 0
