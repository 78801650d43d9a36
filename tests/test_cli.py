"""The `bridge` command writes a run. Its bad inputs (one-line errors, nothing lost) are all in
one table, tests/test_bad_inputs.py; its crash safety is tests/test_reliability.py."""
import json

from bridgelib.cli import main


def test_train_writes_a_run(tmp_path, monkeypatch):
    import bridgelib.cli as cli
    from bridgelib.config import get_config
    # a short run: shrink the real stage of the config the command resolves
    monkeypatch.setattr(cli, "_config", lambda args: get_config(
        "mini", **{"train.real.epochs": 2, "train.real.min_steps": 4}))
    out = tmp_path / "run"
    argv = ["train", "--recipe", "vanilla", "--shots", "1", "--out", str(out)]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "history.csv", "metrics.json"}
    assert json.loads((out / "metrics.json").read_text())["recipe"] == "vanilla"
    # a second run into the same folder is refused: the table's "out-holds-a-training-run"
