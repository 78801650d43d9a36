"""The `bridge` command: every bad input stops with one line naming the value; nothing is lost."""
import json

import pytest

from bridgelib.cli import main


def run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("argv, named", [
    (["train", "--profile", "big", "--recipe", "vanilla"], "'big'"),
    (["train", "--recipe", "vanilla", "--shots", "0"], "shots=0"),
    (["train", "--recipe", "vanilla", "--shots", "5000"], "shots=5000"),
    (["train", "--recipe", "vanilla", "--shots", "abc"], "shots='abc'"),
    (["train", "--recipe", "bridged+"], "'bridged+'"),
    (["train", "--recipe", "bridged++"], "--synthetic"),
    (["train", "--recipe", "vanilla", "--dataset", "cifar"], "'cifar'"),
])
def test_bad_train_inputs_give_one_line(argv, named, tmp_path, capsys):
    code, err = run(argv + ["--out", str(tmp_path / "run")], capsys)
    assert code == 2 and named in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_train_writes_a_run_and_refuses_to_overwrite_it(tmp_path, capsys, monkeypatch):
    import bridgelib.cli as cli
    from bridgelib.config import get_config
    # a short run: shrink the real stage of the config the command resolves
    monkeypatch.setattr(cli, "_config", lambda args: get_config(
        "mini", **{"train.real.epochs": 2, "train.real.min_steps": 4}))
    out = tmp_path / "run"
    argv = ["train", "--recipe", "vanilla", "--shots", "1", "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"config.json", "history.csv", "metrics.json"}
    code, err = run(argv, capsys)
    assert code == 2 and "already holds a run" in err and "\n" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads(before["metrics.json"])["recipe"] == "vanilla"


def test_missing_backbone_weights_say_how_to_rebuild(tmp_path, capsys, monkeypatch):
    import bridgelib.cli as cli
    from bridgelib.config import get_config
    monkeypatch.setattr(cli, "_config", lambda args: get_config("mini", backbone_weights=str(tmp_path / "none")))
    code, err = run(["train", "--recipe", "vanilla", "--shots", "1", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "bridge mini build" in err and "\n" not in err


def test_generate_refuses_bad_per_class(tmp_path, capsys):
    code, err = run(["generate", "--per-class", "0", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "per_class" in err and "\n" not in err
