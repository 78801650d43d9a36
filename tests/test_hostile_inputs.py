"""Hostile and careless inputs (issue 17), through the `bridge` command.

Every row is an input a careless or hostile user could give and a guard against it: non-finite
or runaway numbers, paths taken from files that leave their folder, deletions beyond what the
project wrote, image formats that decode to nonsense, and failures that would come only after
the expensive work. Each must exit 2 (a usage error) with exactly one line on stderr
(`bridge <command>: error: ...`, no traceback) holding every `named` string, and every file
that existed before the call must be there after it, byte for byte, with nothing new written.
docs/bad_inputs.md lists these cases by kind: keep them in step.
"""
import json
from pathlib import Path

import pytest

import bridgelib.cli as cli


def generate(t, *extra):
    return ["generate", "--per-class", "1", "--steps", "1", "--out", str(t / "set"), *extra]


def train(t, *extra):
    return ["train", "--recipe", "vanilla", "--shots", "1", "--out", str(t / "run"), *extra]


def invert(t, *extra):
    return ["invert", "--shots", "1", "--out", str(t / "tok.safetensors"), *extra]


# (id, setup(tmp) -> argv, strings the one-line message must hold)
CASES = [
    # --- non-finite numbers: refused by the field's rule wherever they enter -------------------
    ("guidance-inf", lambda t: generate(t, "--guidance", "inf"), ["guidance=inf", "positive number"]),
    ("guidance-nan", lambda t: generate(t, "--guidance", "nan"), ["guidance=nan", "positive number"]),
    ("guidance-set-nan", lambda t: generate(t, "--set", "generation.guidance=nan"),
     ["generation.guidance=nan", "positive number"]),
    ("invert-lr-inf", lambda t: invert(t, "--lr", "inf"), ["lr=inf", "positive number below 10"]),
    ("invert-lr-nan", lambda t: invert(t, "--lr", "nan"), ["lr=nan", "positive number"]),
    ("train-lr-inf", lambda t: train(t, "--set", "train.real.lr=inf"),
     ["train.real.lr=inf", "positive number"]),
    # --- counts capped, the cap in the message --------------------------------------------------
    ("generate-steps-huge", lambda t: generate(t) + ["--steps", "1000000000"],
     ["steps=1000000000", "up to 1,000"]),
    ("invert-steps-huge", lambda t: invert(t, "--steps", "1000000000"),
     ["steps=1000000000", "up to 1,000,000"]),
    ("per-class-huge", lambda t: generate(t) + ["--per-class", "1000000000"],
     ["per_class=1000000000", "up to 100,000"]),
    ("batch-size-huge", lambda t: generate(t, "--batch-size", "100000000"),
     ["batch_size=100000000", "up to 4,096"]),
    ("train-epochs-huge", lambda t: train(t, "--set", "train.real.epochs=1000000000"),
     ["train.real.epochs=1000000000", "up to 10,000"]),
    ("train-seed-negative", lambda t: train(t, "--seed", "-1"), ["seed=-1", "integer >= 0"]),
    ("generate-seed-beyond-numpy", lambda t: generate(t, "--seed", str(2**40)),
     [f"seed={2**40}", "up to 4,294,967,295"]),
    # --- the token and its record are never the same file ---------------------------------------
    ("invert-out-is-its-own-record",
     lambda t: ["invert", "--shots", "1", "--steps", "1", "--out", str(t / "style.json")],
     ["style.json'", "its own training record", "*.safetensors"]),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def run_cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err.strip()


def assert_one_line(code, err, command, named):
    assert code == 2, err
    assert err.startswith(f"bridge {command}: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    for text in named:
        assert text in err, f"{text!r} not in: {err}"


@pytest.mark.parametrize("setup, named", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_gives_one_line_and_loses_nothing(setup, named, tmp_path, capsys):
    argv = setup(tmp_path)
    before = snapshot(tmp_path)
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, argv[0], named)
    assert snapshot(tmp_path) == before
