"""The repository keeps its promises: CI runs the README's test command; configs match code."""

import dataclasses
from pathlib import Path

import yaml

from seisbind.data.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    main_job, tests = readme_commands()
    assert "pytest" in tests and "seisbind" in main_job
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    # besides the README's line, only the install of what the tests need from Debian (the browser)
    installs = [ln for ln in ci_lines if ln.startswith("if ! command -v chromium")]
    assert all("apt-get install -y -qq chromium" in ln for ln in installs) and len(installs) <= 1
    assert [ln for ln in ci_lines if ln not in installs] == [tests]


def test_data_config_files_hold_the_code_defaults():
    for name, scenario in SCENARIOS.items():
        on_disk = yaml.safe_load((ROOT / "configs" / "data" / f"{name}.yaml").read_text())
        defaults = dataclasses.asdict(scenario.config_class())
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()} == on_disk
        scenario.make_config(**on_disk)  # and they validate


def test_pyproject_ships_every_package_and_config():
    """A plain (non-editable) install holds every subpackage and every shipped config file."""
    import fnmatch

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "seisbind").rglob("__init__.py")}
    assert set(tool["packages"]) == tree | {"seisbind.configs"}
    assert tool["package-dir"] == {"seisbind.configs": "configs"}
    globs = tool["package-data"]["seisbind.configs"]
    configs = ROOT / "configs"
    shipped = [p for p in configs.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json")]
    assert shipped and all(any(fnmatch.fnmatch(str(p.relative_to(configs)), g) for g in globs) for p in shipped)
    from seisbind.configs import config_path

    assert config_path("models").resolve() == (configs / "models").resolve()


def test_train_and_evaluate_are_subcommands_and_configs_resolve_by_name(tmp_path, capsys, monkeypatch):
    import subprocess
    import sys

    from seisbind.cli import main
    from seisbind.configs import config_path
    from seisbind.training.config import load_config

    monkeypatch.chdir(tmp_path)  # no configs/ folder here, as after a plain install
    assert load_config("quickstart").data == load_config(config_path("quickstart.yaml")).data
    assert load_config("configs/openfwi.yaml").model_overrides["image"]["normalize"] == "fixed"
    assert main(["train", "--config", "no-such-config"]) == 2
    err = capsys.readouterr().err
    assert "seisbind train: error: train config no-such-config not found" in err and "'quickstart'" in err
    assert main(["evaluate", "--model", str(tmp_path / "none"), "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("seisbind evaluate: error:")
    shown = subprocess.run([sys.executable, "-m", "seisbind.training.cli", "--config", "openfwi", "--show-config"],
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "normalize: fixed" in shown.stdout


def test_yaml_floats_in_exponent_form_are_numbers(tmp_path):
    """YAML 1.1 reads 4e3 as a string; configs and --set values read it as 4000.0 (YAML 1.2)."""
    import argparse

    from seisbind.configs import load_yaml
    from seisbind.data.generate_cli import _FLAG_TO_KEY, config_overrides
    from seisbind.training.config import load_config

    assert load_yaml("width_m: 4e3\nlr: 1e-3\nn: 3\nname: '4e3'") == {"width_m": 4000.0, "lr": 0.001, "n": 3,
                                                                      "name": "4e3"}
    assert load_config(None, ["lr=3e-4"]).lr == 3e-4
    args = argparse.Namespace(config=None, scenario="quake", set=["width_m=4e3"], **dict.fromkeys(_FLAG_TO_KEY))
    assert config_overrides(args) == {"width_m": 4000.0}


def test_counts_and_durations_are_checked_when_the_command_line_is_read(capsys):
    """--batch-size -2, --stations 0, --window-seconds inf: one line at parse time, exit 2."""
    import pytest

    from seisbind.cli import main

    cases = [
        (["export", "--model", "m", "--data", "d", "--out", "x.parquet", "--batch-size", "-2"],
         "argument --batch-size: expected a whole number of at least 1, got -2"),
        (["import-manifest", "m.csv", "--out", "o", "--stations", "0"], "argument --stations: expected a whole number"),
        (["index", "query", "--index", "i", "--model", "m", "--waveform", "w", "--window-seconds", "inf"],
         "argument --window-seconds: expected a finite number, got inf"),
        (["embed-waveforms", "--waveforms", "f", "--model", "m", "--out", "o", "--stride-seconds", "0"],
         "argument --stride-seconds: expected a number above 0"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
