"""``seisbind generate``: physics-based paired data, and OpenFWI ``.npy`` import/export."""

from __future__ import annotations

import argparse

from seisbind.argtypes import positive_float, positive_int
from seisbind.configs import load_yaml
from seisbind.overrides import add_set_argument, parse_overrides

# The scenarios' names, written here so `seisbind generate --help` needs no torch or deepwave
# (tests/test_repository.py checks them against seisbind.data.scenarios.SCENARIOS).
SCENARIO_NAMES = ("openfwi", "quake")

# Flags that map to scenario config keys (per scenario), as open_clip's flags map to config keys.
_FLAG_TO_KEY = {
    "sources_per_geology": {"quake": "sources_per_geology"},
    "n_stations": {"quake": "n_stations"},
    "image_size": {"quake": ("image_height", "image_width")},
    "window_seconds": {"quake": "window_seconds"},
    "grid_spacing": {"quake": "grid_spacing", "openfwi": "grid_spacing"},
    "wavelet_freq": {"quake": "wavelet_freq", "openfwi": "wavelet_freq"},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", choices=SCENARIO_NAMES, default="quake",
                   help="quake: sections + 3-C station records of sources at depth; openfwi: OpenFWI-layout "
                        "velocity maps + 5-shot acoustic gathers (default quake)")
    p.add_argument("--out", required=True, help="output folder (resumes if it holds the same generation)")
    p.add_argument("--num-geologies", type=int, default=32, help="geologies (rows) to generate (default 32)")
    p.add_argument("--validation-geologies", type=positive_int,
                   help="geologies held out for validation (default a tenth of --num-geologies)")
    p.add_argument("--test-geologies", type=positive_int,
                   help="geologies held out for test (default a tenth of --num-geologies); fix both to grow "
                        "the training split while the galleries stay the same size")
    p.add_argument("--sources-per-geology", type=int, help="quake: sources (positive waveforms) per geology")
    p.add_argument("--n-stations", type=int, help="quake: surface stations")
    p.add_argument("--image-size", type=int, help="quake: section image height = width, pixels (default 224)")
    p.add_argument("--window-seconds", type=positive_float, help="quake: recording window, s (default 30, 3001 samples)")
    p.add_argument("--grid-spacing", type=float, help="simulation cell size, m")
    p.add_argument("--wavelet-freq", type=float, help="Ricker peak frequency, Hz")
    p.add_argument("--config", help="YAML file of scenario config keys (see configs/data/)")
    add_set_argument(p, "any scenario config key", "width_m=4000")
    p.add_argument("--seed", type=int, default=0, help="random seed of the geologies and sources (default 0)")
    p.add_argument("--workers", type=int, default=0, help="worker processes, one thread each (0 = one per CPU)")
    p.add_argument("--shard", default="0/1", help="k/n: generate only chunks c with c %% n == k (cluster array jobs)")
    p.add_argument("--chunk-size", type=positive_int, default=8, help="geologies per chunk: the unit of resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--import-openfwi", metavar="NPY_DIR", help="convert OpenFWI data*/model*.npy pairs instead of simulating")
    p.add_argument("--export-openfwi", metavar="NPY_DIR", help="after generating, write the openfwi split(s) as OpenFWI .npy pairs")


def config_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    if args.config:
        with open(args.config) as fh:
            loaded = load_yaml(fh) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config} must hold a mapping of config keys")
        overrides.update(loaded)
    for flag, per_scenario in _FLAG_TO_KEY.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.scenario not in per_scenario:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to scenario {args.scenario}")
        keys = per_scenario[args.scenario]
        for key in keys if isinstance(keys, tuple) else (keys,):
            overrides[key] = value
    overrides.update(parse_overrides(args.set))
    return overrides


def run(args: argparse.Namespace) -> int:
    from seisbind.data.generate import default_split_sizes, generate, parse_shard
    from seisbind.data.openfwi_io import export_openfwi, import_openfwi

    if args.import_openfwi:
        path = import_openfwi(args.import_openfwi, args.out, seed=args.seed)
        print(f"imported OpenFWI pairs into {path}")
        return 0
    split_sizes = None
    if args.validation_geologies or args.test_geologies:
        n_val, n_test = default_split_sizes(args.num_geologies)
        split_sizes = (args.validation_geologies or n_val, args.test_geologies or n_test)
    report = generate(
        args.out,
        args.scenario,
        args.num_geologies,
        seed=args.seed,
        workers=args.workers,
        shard=parse_shard(args.shard),
        chunk_size=args.chunk_size,
        config=config_overrides(args),
        progress=not args.no_progress,
        split_sizes=split_sizes,
    )
    print(
        f"{args.scenario}: {report.geologies_generated} geologies ({report.pairs} image-waveform pairs) in "
        f"{report.wall_seconds:.1f} s, {report.pairs_per_second:.2f} pairs/s; "
        f"{report.chunks_skipped} finished chunk(s) kept from before"
    )
    if report.dataset_path is None:
        print(f"chunks written to {report.out_dir / 'chunks'}; the dataset is complete when every shard has finished")
        return 0
    print(f"dataset complete: {report.dataset_path} (load with seisbind.data.dataset.load_paired)")
    if args.export_openfwi:
        if args.scenario != "openfwi":
            raise ValueError("--export-openfwi needs --scenario openfwi")
        for split in ("train", "validation", "test"):
            files = export_openfwi(report.dataset_path, f"{args.export_openfwi}/{split}", split)
            print(f"{split}: wrote {len(files)} OpenFWI file(s) to {args.export_openfwi}/{split}")
    return 0

