"""A plain (non-editable) install works: the wheel holds the configs, and from another folder
``create_model('tiny')``, a 2-step ``seisbind train`` and ``seisbind quickstart --help`` run.

The wheel is built from this checkout and installed with ``pip install --no-deps`` (not editable)
into a fresh virtual environment; the dependencies come from the running environment, whose
site-packages the new one reads through a ``.pth`` line after its own (so nothing is downloaded,
and its own seisbind comes first). The child checks that it imported the installed copy, and the
``seisbind`` command of the new environment runs.
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
sets = [f"data={report.dataset_path}", "output_dir=run", "max_steps=2", "time_budget_s=null", "batch_size=4",
        "num_workers=0", "min_stations=2", "max_stations=4", "warmup_steps=1", "eval_every=2", "save_every=2",
        "tracker=none", "progress=false", "model_overrides.image.img_size=32"]
code = main(["train", "--config", "quickstart", *[a for s in sets for a in ("--set", s)]])
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
    import site
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    # the running environment's packages (torch, ...), after the venv's own; its editable seisbind
    # finder is a .pth of that folder, which a plain path line does not run
    outer = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(own, "outer-environment.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    done = subprocess.run([str(python), "-c", CHILD, own, json.dumps(TINY_QUAKE)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "installed ok" in done.stdout, done.stdout[-2000:] + done.stderr[-4000:]
    command = subprocess.run([str(venv / "bin" / "seisbind"), "--help"], cwd=work, env=env, capture_output=True,
                             text=True, timeout=120)
    assert command.returncode == 0 and "quickstart" in command.stdout, command.stderr[-2000:]
