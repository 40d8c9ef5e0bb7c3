"""``seisbind embed-images``: SEG-Y patches embedded with their survey coordinates, into Parquet."""

from __future__ import annotations

import argparse
import sys

from seisbind.argtypes import positive_int
from seisbind.io.segy import SLICES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segy", action="append", required=True, metavar="FILE",
                   help="post-stack SEG-Y file (2-D line or 3-D volume); repeat for more files")
    p.add_argument("--model", required=True,
                   help="a folder written by save_pretrained, or an architecture name such as tiny (random weights)")
    p.add_argument("--out", required=True, help="output .parquet file (written atomically)")
    p.add_argument("--stride", type=int, help="pixels between patches (default: the patch size, no overlap)")
    p.add_argument("--slice", choices=SLICES, default="auto",
                   help="sections to cut: auto = line for 2-D files, inline for 3-D (default auto)")
    p.add_argument("--slice-step", type=int, default=1, help="use every n-th section (default 1)")
    p.add_argument("--keep-dead", action="store_true", help="also embed constant patches (zero padding, dead areas)")
    p.add_argument("--iline-byte", type=int, default=189, help="trace header byte of the inline number (default 189)")
    p.add_argument("--xline-byte", type=int, default=193, help="trace header byte of the crossline number (default 193)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="items embedded per forward pass (default 32)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from seisbind.io.batch import BatchJob
    from seisbind.io.embeddings import EmbeddingWriter, schema_metadata
    from seisbind.io.encode import BatchEncoder, load_model
    from seisbind.io.segy import PatchCounts, coordinate_fields, iter_patches, patch_id
    from seisbind.modalities import ModalityType

    model, info = load_model(args.model, args.device)
    image = model.config.image
    if image.in_chans != 1:
        raise ValueError(f"model {args.model} takes {image.in_chans}-channel images; SEG-Y sections have 1 channel")
    size = image.img_hw
    options = {"stride": args.stride or list(size), "slice": args.slice, "slice_step": args.slice_step,
               "skip_dead": not args.keep_dead, "patch_size": list(size)}  # fmt: skip
    job = BatchJob("file")
    meta = schema_metadata(info, ModalityType.IMAGE, options)
    with EmbeddingWriter(args.out, coordinate_fields(), ModalityType.IMAGE, meta) as writer:
        encoder = BatchEncoder(model, ModalityType.IMAGE, writer, args.batch_size, args.device)
        bar = tqdm(desc="patches", unit="patch", disable=args.no_progress)
        for path in args.segy:
            counts = PatchCounts()
            failed_before = len(job.failures)
            with job.guard(path):
                for patch, coords in iter_patches(
                    path, size, args.stride, args.slice, args.slice_step, skip_dead=not args.keep_dead,
                    counts=counts, iline=args.iline_byte, xline=args.xline_byte,
                ):  # fmt: skip
                    encoder.add(patch, patch_id(coords), coords)
                    bar.update()
            if len(job.failures) > failed_before:
                continue
            left_out = f"; left out {counts.dead} constant and {counts.incomplete} incomplete" if counts.dead or counts.incomplete else ""
            print(f"{path}: {counts.patches} patch(es) of {size[0]} x {size[1]} from {counts.sections} section(s){left_out}",
                  file=sys.stderr)  # fmt: skip
        encoder.close()
        bar.close()
    if writer.rows_written == 0:
        job.finish()
        print(f"seisbind embed-images: nothing to write: no input gave a patch to embed; {args.out} was not written",
              file=sys.stderr)
        return 1
    print(f"wrote {writer.rows_written} image embedding(s) to {args.out}")
    return job.finish()
