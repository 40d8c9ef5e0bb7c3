"""``seisbind embed-waveforms``: waveform files (miniSEED, SAC, ...) or a local SeisBench dataset, embedded into Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seisbind.argtypes import nonnegative_float, positive_float, positive_int
from seisbind.io.components import MISSING_MODES
from seisbind.io.obspy_streams import GAP_MODES, GROUP_MODES, MAX_UPSAMPLING, WAVEFORM_FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--waveforms", nargs="+", metavar="FILE",
                        help="recordings: miniSEED, SAC or another format of --format's list (never any other), "
                             "detected per file; folders are searched recursively")
    source.add_argument("--mseed", nargs="+", metavar="FILE", help="deprecated name of --waveforms")
    source.add_argument("--seisbench", metavar="DIR", help="a SeisBench dataset folder on local disk (never downloaded)")
    p.add_argument("--model", required=True,
                   help="a folder written by save_pretrained, or an architecture name such as tiny (random weights)")
    p.add_argument("--out", required=True, help="output .parquet file (written atomically)")
    p.add_argument("--window-seconds", type=nonnegative_float, default=30.0,
                   help="window length, s: round(s * rate) + 1 samples (default 30 -> 3001 at 100 Hz); 0 = whole records")
    p.add_argument("--stride-seconds", type=positive_float, help="seconds between window starts (default: the window length)")
    p.add_argument("--missing", choices=MISSING_MODES, default="fill",
                   help="a missing component: fill (the model copies a live one, as SeisLM) or refuse (default fill)")
    p.add_argument("--gaps", choices=GAP_MODES, default="refuse",
                   help="gaps and overlaps: refuse the file, fill (interpolate) or split into contiguous parts")
    p.add_argument("--group", choices=GROUP_MODES, default="station",
                   help="one embedding per station window, or per time window over all stations of a file")
    p.add_argument("--max-upsampling", type=positive_float, default=MAX_UPSAMPLING,
                   help="refuse records that must be upsampled more than this factor to the model's rate "
                        f"(default {MAX_UPSAMPLING:g}; a 1 Hz channel would need 100)")
    p.add_argument("--inventory", metavar="STATIONXML",
                   help="station metadata: orientations to rotate Z12 channels to ZNE, and coordinates (written "
                        "as latitude/longitude/elevation_m, and given to the tower as positions along the array)")
    p.add_argument("--format", type=str.upper, choices=tuple(WAVEFORM_FORMATS), metavar="FORMAT",
                   help="read every file as this format (any case; also unpacks gzip/zip/tar files of it): "
                        f"{', '.join(WAVEFORM_FORMATS)}; default: detected per file among these")
    p.add_argument("--limit", type=positive_int, help="SeisBench: embed only the first N traces")
    p.add_argument("--batch-size", type=positive_int, default=32, help="items embedded per forward pass (default 32)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given, and the files under folders (recursively, hidden ones left out), sorted."""
    out = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
            out.extend(str(p) for p in sorted(found))
        else:
            out.append(text)
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from seisbind.io.batch import BatchJob
    from seisbind.io.embeddings import EmbeddingWriter, schema_metadata
    from seisbind.io.encode import BatchEncoder, load_model
    from seisbind.io.obspy_streams import (
        iter_windows,
        prepare_stream,
        read_stream,
        window_fields,
    )
    from seisbind.modalities import ModalityType

    # Inputs are checked before the model loads, so a wrong path fails in a second.
    dataset = files = None
    if args.seisbench:
        from seisbind.io.seisbench_datasets import metadata_fields, open_dataset

        dataset = open_dataset(args.seisbench)
    else:
        if args.mseed:
            print("note: --mseed is deprecated (it reads every format of the allow-list, not only miniSEED); "
                  "write --waveforms", file=sys.stderr)
        given = args.waveforms or args.mseed
        files = expand_paths(given)
        if not files:
            raise ValueError(f"no files found in {given}")
    inventory = None
    if args.inventory:
        import obspy

        try:
            # StationXML named, never guessed: ObsPy's format detection tries plugin after plugin
            inventory = obspy.read_inventory(args.inventory, format="STATIONXML")
        except Exception as err:
            raise ValueError(f"{args.inventory}: ObsPy cannot read it as StationXML ({err})") from err
    model, info = load_model(args.model, args.device)
    rate = float(model.config.waveform.sampling_rate)
    if model.config.waveform.in_chans != 3:
        raise ValueError(f"model {args.model} takes {model.config.waveform.in_chans} waveform channels, not Z, N, E")
    options = {"window_seconds": args.window_seconds, "stride_seconds": args.stride_seconds or args.window_seconds,
               "missing": args.missing, "gaps": args.gaps, "group": args.group, "sampling_rate": rate,
               "max_upsampling": args.max_upsampling,
               "inventory": args.inventory}  # fmt: skip
    fields = window_fields()
    if dataset is not None:
        sb_fields = metadata_fields(dataset, {f.name for f in fields} | {"id", "modality", "embedding"})
        fields = fields + sb_fields
        options["seisbench"] = str(args.seisbench)
    meta = schema_metadata(info, ModalityType.WAVEFORM, options)

    def windows(prepared):
        return iter_windows(prepared, args.window_seconds, args.stride_seconds, args.group)

    with EmbeddingWriter(args.out, fields, ModalityType.WAVEFORM, meta) as writer:
        encoder = BatchEncoder(model, ModalityType.WAVEFORM, writer, args.batch_size, args.device)
        if dataset is None:
            job = BatchJob("file")
            for path in tqdm(files, desc="files", unit="file", disable=args.no_progress):
                with job.guard(path):
                    stream = read_stream(path, format=args.format)
                    prepared = prepare_stream(stream, rate, args.missing, args.gaps, inventory, source=path,
                                              max_upsampling=args.max_upsampling)
                    for item in windows(prepared):
                        encoder.add(item.data, item.id, item.meta, item.station_x_m)
                    for note in prepared.notes:
                        print(f"note: {note}", file=sys.stderr)
        else:
            from seisbind.io.seisbench_datasets import (
                iter_trace_indices,
                row_metadata,
                trace_label,
                trace_stream,
            )

            job = BatchJob("trace")
            n = len(dataset) if args.limit is None else min(len(dataset), args.limit)
            for index in tqdm(iter_trace_indices(dataset, args.limit), total=n, desc="traces", unit="trace",
                              disable=args.no_progress):  # fmt: skip
                label = f"{args.seisbench}#{index}"
                with job.guard(label):
                    stream, row = trace_stream(dataset, index, args.seisbench)
                    label = f"{args.seisbench}|{trace_label(row, index)}"
                    prepared = prepare_stream(stream, rate, args.missing, "refuse", inventory, source=label,
                                              max_upsampling=args.max_upsampling)
                    extra = row_metadata(row, sb_fields)
                    for item in windows(prepared):
                        meta = {**item.meta, "file": str(args.seisbench), **extra}
                        encoder.add(item.data, item.id, meta, item.station_x_m)
        encoder.close()
    if writer.rows_written == 0:
        job.finish()
        print(f"seisbind embed-waveforms: nothing to write: no input gave a window to embed; {args.out} was not "
              "written", file=sys.stderr)
        return 1
    print(f"wrote {writer.rows_written} waveform embedding(s) to {args.out}")
    return job.finish()
