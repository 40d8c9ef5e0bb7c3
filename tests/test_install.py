"""A plain (non-editable) install works: the wheel holds the configs, and from another folder
``create_model('tiny')``, a 2-step ``seisbind train`` and ``seisbind quickstart --help`` run.

The wheel is built from this checkout and installed with ``--no-deps --target`` into a temporary
folder, which is put first on ``PYTHONPATH``; the dependencies come from the running
environment, so nothing is downloaded. The child checks that it imported the installed copy.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.test_data_generate import TINY_QUAKE

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
from pathlib import Path
import seisbind
from seisbind.cli import main
from seisbind.data.generate import generate
from seisbind.models import list_models

target, tiny = sys.argv[1], json.loads(sys.argv[2])
assert Path(seisbind.__file__).resolve().is_relative_to(Path(target).resolve()), seisbind.__file__
assert {"tiny", "sfm-seislm-base", "sfm-seislm-large"} <= set(list_models()), list_models()
assert isinstance(seisbind.create_model("tiny"), seisbind.SeisBindModel) and seisbind.list_models() == list_models()
report = generate("data", "quake", 20, seed=3, workers=1, chunk_size=10, config=tiny, progress=False)
code = main(["train", "--config", "quickstart", f"data={report.dataset_path}", "output_dir=run", "max_steps=2",
             "batch_size=4", "num_workers=0", "min_stations=2", "max_stations=4", "warmup_steps=1",
             "eval_every=2", "save_every=2", "tracker=none", "progress=false",
             "model_overrides.image.img_size=32"])
assert code == 0 and Path("run/final-model/model.safetensors").is_file(), code
try:
    main(["quickstart", "--help"])
except SystemExit as exit:
    assert exit.code == 0
print("installed ok")
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of the sources, so setuptools' build/ and egg-info never land in the checkout.
    source, out = tmp_path_factory.mktemp("source") / "seisbind", tmp_path_factory.mktemp("wheel")
    local = {".git", ".venv", "runs", "build", "dist", ".pytest_cache", "data", "out"}  # top-level only

    def skip(folder, names):
        top = Path(folder) == ROOT
        return [n for n in names if (top and n in local) or n == "__pycache__" or n.endswith(".egg-info")]

    shutil.copytree(ROOT, source, ignore=skip)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    (found,) = out.glob("seisbind-*.whl")
    return found


def test_wheel_ships_configs_scripts_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for config in ("models/tiny.json", "data/quake-quickstart.yaml", "quickstart.yaml", "openfwi.yaml"):
        assert f"seisbind/configs/{config}" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    assert any(n.endswith("/LICENSE") for n in names)


def test_plain_install_runs_from_another_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(target), json.dumps(TINY_QUAKE)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "installed ok" in done.stdout, done.stdout[-2000:] + done.stderr[-4000:]
