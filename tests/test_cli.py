"""The command line as one tool: help for every option, a fast top-level help, one override syntax,
consistent defaults, and errors that say a folder was expected."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from seisbind.cli import _COMMANDS, build_parser, main


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("seisbind",)):
    """Every (command path, parser) of the full command line, sub-sub-commands included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    undocumented = [(" ".join(path), a.option_strings or a.dest)
                    for path, p in _parsers(build_parser()) for a in p._actions
                    if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
                    and not (a.help or "").strip()]  # fmt: skip
    assert undocumented == []
    assert {path[1] for path, _ in _parsers(build_parser()) if len(path) > 1} == set(_COMMANDS)


def test_help_and_every_commands_help_load_no_torch():
    """`seisbind --help` and `seisbind CMD --help` import neither torch nor deepwave: what made the
    top-level help take 6.5 s (benchmarks/bench_cli_startup.py times it)."""
    code = (
        "import sys, contextlib, io\n"
        "from seisbind.cli import main\n"
        "for argv in [['--help']] + [[c, '--help'] for c in sys.argv[1:]]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try: main(argv)\n"
        "        except SystemExit: pass\n"
        "heavy = sorted(m for m in ('torch', 'deepwave', 'timm', 'transformers') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *_COMMANDS], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none", out.stdout + out.stderr


def test_only_the_chosen_command_is_loaded():
    parser = build_parser(only="export")
    choices = parser._subparsers._group_actions[0].choices
    assert any(a.dest == "model" for a in choices["export"]._actions)
    assert not any(a.dest == "scenario" for a in choices["generate"]._actions)  # listed, not loaded


def test_missing_component_default_is_the_same_everywhere():
    defaults = {(" ".join(path)): p.get_default("missing") for path, p in _parsers(build_parser())
                if any(a.dest == "missing" for a in p._actions)}  # fmt: skip
    assert len(defaults) >= 3 and set(defaults.values()) == {"fill"}, defaults


def test_every_command_with_overrides_spells_them_set():
    spelled = {path[1] for path, p in _parsers(build_parser()) for a in p._actions if "--set" in a.option_strings}
    assert {"generate", "train", "evaluate", "quickstart"} <= spelled


def test_set_values_are_yaml_and_malformed_items_are_one_line():
    from seisbind.overrides import parse_overrides

    assert parse_overrides(["lr=3e-4", "betas=[0.9, 0.98]", "name=x=y", "empty="]) == {
        "lr": 3e-4, "betas": [0.9, 0.98], "name": "x=y", "empty": ""}
    with pytest.raises(ValueError, match="--set expects KEY=VALUE, got 'lr'"):
        parse_overrides(["lr"])
    with pytest.raises(ValueError, match="unknown key 'sed'; choose one of seed"):
        parse_overrides(["sed=1"], allowed={"seed"})
    with pytest.raises(ValueError, match="not valid YAML"):
        parse_overrides(["x=[1"])


def test_train_reads_set_and_the_old_bare_spelling_with_a_note(capsys):
    assert main(["train", "--config", "quickstart", "--set", "max_steps=700", "--set", "lr=2e-3", "--show-config"]) == 0
    captured = capsys.readouterr()
    assert "max_steps: 700\n" in captured.out and "lr: 0.002\n" in captured.out and "deprecated" not in captured.err
    assert main(["train", "--config", "quickstart", "max_steps=900", "--show-config"]) == 0
    captured = capsys.readouterr()
    assert "max_steps: 900\n" in captured.out and "write --set key=value" in captured.err
    assert main(["train", "--set", "max_stepz=3", "--show-config"]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err


def test_evaluate_and_quickstart_refuse_an_unknown_set_key_before_any_work(tmp_path, capsys):
    assert main(["evaluate", "--model", "m", "--data", "d", "--set", "bogus=1"]) == 2
    assert "unknown key 'bogus'; choose one of baseline_steps" in capsys.readouterr().err
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--set", "bogus=1"]) == 2
    assert "unknown train config key 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()  # refused before generating anything


def test_mseed_is_an_alias_of_waveforms_with_a_note(tmp_path, capsys):
    missing = str(tmp_path / "none")
    assert main(["embed-waveforms", "--mseed", missing, "--model", "tiny", "--out", str(tmp_path / "o.parquet")]) != 0
    err = capsys.readouterr().err
    assert "--mseed is deprecated" in err and "write --waveforms" in err
    with pytest.raises(SystemExit):
        main(["embed-waveforms", "--mseed", missing, "--waveforms", missing, "--model", "tiny", "--out", "o.parquet"])


@pytest.mark.parametrize("argv, message", [
    (["export", "--model", "{missing}", "--data", "{missing}", "--out", "x.parquet"],
     "{missing}: no such folder; expected a model folder written by save_pretrained"),
    (["export", "--model", "{file}", "--data", "{missing}", "--out", "x.parquet"],
     "{file} is a file, but a model folder written by save_pretrained"),
    (["export", "--model", "tiny", "--data", "{file}", "--out", "x.parquet"],
     "{file} is a file, but a data folder written by `seisbind generate`"),
    (["index", "query", "--index", "{missing}", "--model", "tiny", "--image", "{file}"],
     "{missing}: no such folder; expected an index folder"),
])  # fmt: skip
def test_a_wrong_path_says_a_folder_was_expected(tmp_path, capsys, argv, message):
    names = {"missing": str(tmp_path / "nowhere"), "file": str(tmp_path / "a.txt")}
    (tmp_path / "a.txt").write_text("not a folder")
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(**names) in err and "\n" not in err


def test_generate_lists_the_registered_scenarios():
    """generate_cli names the scenarios without importing them (no torch for --help); the names
    must be the registry's."""
    from seisbind.data.generate_cli import SCENARIO_NAMES
    from seisbind.data.scenarios import SCENARIOS

    assert tuple(sorted(SCENARIOS)) == SCENARIO_NAMES
