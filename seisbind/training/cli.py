"""Command line of training (``seisbind train``, ``train_contrastive.py``, ``python -m
seisbind.training.cli``): a config file, ``--set key=value`` overrides, ``--resume``."""

from __future__ import annotations

import argparse
import sys

from seisbind.configs import config_path
from seisbind.overrides import add_set_argument, warn_bare


DESCRIPTION = "Contrastive training of the seisbind joint model (one process, or under `accelerate launch`)."
EPILOG = ("Any config key can be overridden with --set key=value (YAML values), e.g. --set max_steps=200 "
          "--set lr=3e-4 --set model_overrides.image.img_size=32. Run with --show-config to print the resolved config. "
          "Shipped configs: " + ", ".join(sorted(p.name for p in config_path().glob("*.yaml"))) + " (in configs/).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--config", help="YAML file of train config keys, or a shipped config's name (quickstart, openfwi)")
    parser.add_argument("--resume", help="'latest' (the newest checkpoint that verifies) or a checkpoint folder")
    parser.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    add_set_argument(parser, "a train config key", "max_steps=200")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="deprecated spelling of --set key=value")


def build_parser(prog: str = "train_contrastive.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "train_contrastive.py") -> int:
    return run(build_parser(prog).parse_args(argv), prog)


def run(args: argparse.Namespace, prog: str = "seisbind train") -> int:
    import yaml

    from seisbind.training.checkpointing import CheckpointError
    from seisbind.training.config import load_config

    warn_bare(args.overrides)
    try:
        overrides = list(args.overrides) + list(args.set) + ([f"resume={args.resume}"] if args.resume else [])
        config = load_config(args.config, overrides)
        if args.show_config:
            print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
            return 0
        from seisbind.training.trainer import TrainingDiverged, train

        try:
            result = train(config)
        except TrainingDiverged as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return 1
    except (ValueError, FileNotFoundError) as err:  # CheckpointError is a ValueError
        kind = "checkpoint error" if isinstance(err, CheckpointError) else "error"
        print(f"{prog}: {kind}: {err}", file=sys.stderr)
        return 2
    if result.metrics and result.main_process:
        m = result.metrics
        print(f"done: step {result.step}, loss {result.loss:.4f}, validation recall@1 (waveform -> image) "
              f"{m['wave_to_image_r1']:.3f} over {int(m['gallery_size'])} geologies (chance {m['chance_r1']:.3f}); "
              f"best MRR {result.best_metric:.3f} at step {result.best_step}, in {result.output_dir}/best-model")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m seisbind.training.cli"))
