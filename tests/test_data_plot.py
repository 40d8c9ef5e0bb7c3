"""The pair plot draws a stored quake row and refuses what it cannot draw."""

import pytest

from seisbind.cli import main
from seisbind.data.dataset import load_paired
from seisbind.data.generate import generate
from seisbind.data.plot import plot_pair
from test_data_generate import TINY_QUAKE


def test_plot_sample_writes_a_png(tmp_path):
    generate(tmp_path / "d", "quake", 3, config=TINY_QUAKE, progress=False)
    out = tmp_path / "pair.png"
    assert main(["plot-sample", "--data", str(tmp_path / "d"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    row = load_paired(tmp_path / "d", "train")[0]
    with pytest.raises(ValueError, match="source must be in 0..1"):
        plot_pair(row, source=2)
    with pytest.raises(ValueError, match="quake rows"):
        plot_pair({**row, "scenario": "openfwi"})
    assert main(["plot-sample", "--data", str(tmp_path / "d"), "--index", "99", "--out", str(out)]) == 2
