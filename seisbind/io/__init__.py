"""Bring your own data: readers for the files users have, and the writers that embed them.

One idea per module:

* :mod:`~seisbind.io.segy`: 2-D and 3-D post-stack SEG-Y (segyio) cut into image patches with
  their survey coordinates.
* :mod:`~seisbind.io.components`: which recorded components fill the Z, N, E slots.
* :mod:`~seisbind.io.obspy_streams`: any ObsPy ``Stream``, or a waveform file of an allow-listed format, as station windows
  at the model's sample rate.
* :mod:`~seisbind.io.seisbench_datasets`: a SeisBench ``WaveformDataset`` on local disk.
* :mod:`~seisbind.io.manifest`: a CSV/Parquet manifest of pairs converted into the on-disk dataset
  ``seisbind generate`` writes.
* :mod:`~seisbind.io.embeddings`: embeddings and metadata streamed to Parquet.
* :mod:`~seisbind.io.encode`: loading a model and embedding items in batches.
* :mod:`~seisbind.io.batch`: the per-file error handling every batch job shares.

Modules import their heavy dependencies (segyio, obspy, seisbench, torch) when used, so the
command line starts quickly.
"""
