"""The `bridge` command writes a run; --set, --version, --debug, exit statuses and
`python -m bridgelib`. Its bad inputs (one-line errors, nothing lost) are all in one table,
tests/test_bad_inputs.py; its crash safety is tests/test_reliability.py."""
import json
import subprocess
import sys

import pytest

import bridgelib
from bridgelib.cli import _parser, main
from bridgelib.config import REPO_ROOT, ConfigError

TRAIN = ["train", "--recipe", "vanilla", "--shots", "1"]
# a short run: one epoch of the real stage, two optimizer steps
SHORT = ["--set", "train.real.epochs=1", "--set", "train.real.min_steps=2"]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """main's exit status (argparse's own errors exit) and its stderr, stripped."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip()


def test_python_m_bridgelib_help():
    done = subprocess.run([sys.executable, "-m", "bridgelib", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "generate" in done.stdout and "train" in done.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"bridge {bridgelib.__version__}"


def test_train_writes_a_run_with_set_fields(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, *SHORT, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "history.csv", "metrics.json",
                                           "classifier"}
    assert json.loads((out / "metrics.json").read_text())["recipe"] == "vanilla"
    config = json.loads((out / "config.json").read_text())
    assert (config["train"]["real"]["epochs"], config["train"]["real"]["min_steps"]) == (1, 2)
    # a second run into the same folder is refused before any work: a usage error
    code, err = run_main([*TRAIN, *SHORT, "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err and "\n" not in err


@pytest.mark.parametrize("command", [
    ["generate", "--per-class", "1", "--out", "o"], ["invert", "--out", "o"],
    [*TRAIN, "--out", "o"], ["sweep", "--out", "o"], ["report", "--runs", "r", "--out", "o"],
    ["mini", "build"], ["mini", "calibrate"]])
def test_every_subcommand_takes_set_and_debug(command):
    args = _parser().parse_args([*command, "--set", "train.real.lr=0.5", "--set",
                                 "generation.guidance=5", "--set", "train.mixed_real_fraction=none",
                                 "--set", "train.match_compute=true", "--debug"])
    assert args.set == [("train.real.lr", 0.5), ("generation.guidance", 5.0),
                        ("train.mixed_real_fraction", None), ("train.match_compute", True)]
    assert args.debug


def test_a_bad_set_value_is_one_line_naming_the_field_and_what_is_valid(tmp_path, capsys):
    code, err = run_main([*TRAIN, "--out", str(tmp_path / "run"),
                          "--set", "train.real.momentum=abc"], capsys)
    assert code == 2 and "\n" not in err, err
    assert err == ("bridge train: error: train.real.momentum='abc' is invalid; "
                   "expected a number in [0, 1)")
    assert not (tmp_path / "run").exists()


def test_an_unknown_set_key_is_named_with_the_nearest_valid_one(tmp_path, capsys):
    code, err = run_main([*TRAIN, "--out", str(tmp_path / "run"),
                          "--set", "train.real.epoch=1"], capsys)
    assert code == 2 and "\n" not in err, err
    assert "'train.real.epoch'" in err and "did you mean train.real.epochs" in err


@pytest.mark.parametrize("item", ["train.real.epochs", "=1", "profile=paper"])
def test_a_malformed_set_is_a_usage_error(item, capsys):
    code, err = run_main([*TRAIN, "--out", "o", "--set", item], capsys)
    assert code == 2 and "--set" in err and "\n" not in err, err


def test_set_on_a_command_without_config_is_refused_not_ignored(tmp_path, capsys):
    code, err = run_main(["report", "--runs", str(tmp_path), "--out", str(tmp_path / "rep"),
                          "--set", "seed=1"], capsys)
    assert code == 2 and "--set seed" in err and "no effect" in err, err


def test_a_missing_file_met_by_the_run_exits_1(tmp_path, capsys):
    code, err = run_main([*TRAIN, "--recipe", "bridged", "--synthetic", str(tmp_path / "none"),
                          "--out", str(tmp_path / "run")], capsys)
    assert code == 1 and "does not exist" in err and "\n" not in err, err


def test_debug_raises_for_the_full_traceback(tmp_path):
    with pytest.raises(ConfigError, match="train.real.momentum"):
        main([*TRAIN, "--out", str(tmp_path / "run"), "--set", "train.real.momentum=abc",
              "--debug"])


def test_messages_use_the_command_line_spelling(tmp_path, capsys):
    (tmp_path / "tok.safetensors").write_bytes(b"old token")
    code, err = run_main(["invert", "--shots", "1", "--out", str(tmp_path / "tok.safetensors")],
                         capsys)
    assert code == 2 and "--overwrite" in err and "--resume" in err, err
    assert "overwrite=True" not in err and "resume=True" not in err
