"""Crash safety: `bridge generate|invert|train|sweep` killed with SIGKILL mid-run, then run again.

Each test starts the real command as a subprocess (mini profile, shipped mini weights, small
settings), waits until it has written part of its output, kills it with SIGKILL (no cleanup
code runs), checks that nothing under a final name is partial, then runs the same command
again (in this process, through `bridgelib.cli.main`, which saves a second interpreter start)
and checks that the result is complete, valid and equal to an uninterrupted run.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import bridgelib.cli as cli
from bridgelib.config import REPO_ROOT, get_config

pytestmark = pytest.mark.reliability

# A short real stage (24 optimizer steps, 3 history rows) so a run lasts a few seconds.
FAST_TRAIN = {"train.real.epochs": 3, "train.real.min_steps": 24}


def with_settings(argv: list[str], overrides: dict | None) -> list[str]:
    """ARGV plus `--set FIELD=VALUE` for each config override."""
    return [*argv, *(arg for field, value in (overrides or {}).items()
                     for arg in ("--set", f"{field}={value}"))]


def start(argv: list[str], tmp: Path, overrides: dict | None = None) -> subprocess.Popen:
    """Start `bridge ARGV` (with config overrides) in a fresh interpreter, progress bars on."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "BRIDGELIB_PROGRESS": "1"}
    log = open(tmp / f"{argv[0]}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "bridgelib", *with_settings(argv, overrides)],
                            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def kill_when(proc: subprocess.Popen, ready, tmp: Path, timeout: float = 900) -> None:
    """SIGKILL `proc` as soon as `ready()` holds; fail if it ends (or hangs) before that.

    The timeout only catches a hang: on a loaded machine (niced, sharing 2 cores) a start
    alone can take minutes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            what = "hung" if proc.poll() is None else f"ended (rc={proc.returncode})"
            proc.kill()
            proc.wait()
            pytest.fail(f"{what} before the kill point:\n" + "\n".join(
                p.read_text(errors="replace")[-2000:] for p in tmp.glob("*.log")))
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def rerun(argv: list[str], overrides: dict | None = None) -> None:
    """The same command again, through the CLI's own entry point."""
    assert cli.main(with_settings(argv, overrides)) == 0


def assert_nothing_partial(root: Path) -> list[Path]:
    """Every file under a final name is whole; returns the temp files (dot-named *.tmp)."""
    temps = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".tmp":
            assert path.name.startswith("."), f"temp file without a dot name: {path}"
            temps.append(path)
        elif path.suffix == ".png":
            with Image.open(path) as im:
                im.verify()
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0
        elif path.suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".safetensors":
            load_file(path)
    return temps


def pixels(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.asarray(Image.open(p).convert("RGB")).astype(int)
            for p in sorted(out.glob("*/*.png"))}


def test_generate_survives_sigkill(tmp_path):
    from bridgelib.generate import generate_synthetic_set
    from bridgelib.manifest import read_manifest
    out = tmp_path / "set"
    argv = ["generate", "--per-class", "2", "--out", str(out), "--steps", "2",
            "--batch-size", "2", "--seed", "3"]
    proc = start(argv, tmp_path)
    kill_when(proc, lambda: len(list(out.glob("*/*.png"))) >= 2, tmp_path)
    assert_nothing_partial(out)  # PNGs whole, every manifest line whole
    rows = read_manifest(out)
    assert len(rows) < 20 and all((out / f).is_file() for f in rows.file_name)  # row after PNG
    (out / "007.sneaker").mkdir(exist_ok=True)  # what a kill inside a PNG write leaves behind
    (out / "007.sneaker" / ".00001.png.crash.tmp").write_bytes(b"\x89PNG\r\n")

    rerun(argv)
    assert assert_nothing_partial(out) == []  # temp files of the killed run cleaned up
    rows = read_manifest(out)
    assert len(rows) == 20 and rows.file_name.is_unique
    assert sorted(rows.file_name) == sorted(pixels(out))  # one row per image, no stray image
    ref = generate_synthetic_set(get_config("mini"), tmp_path / "ref", per_class=2, steps=2,
                                 batch_size=2, seed=3, progress_bar=False)
    assert rows.equals(read_manifest(ref))  # same files, seeds, prompts, in the same order
    a, b = pixels(out), pixels(ref)
    assert sorted(a) == sorted(b)
    assert max(np.abs(a[k] - b[k]).max() for k in a) <= 1  # the stated tolerance: 1 of 255


def test_invert_resumes_after_sigkill_to_the_uninterrupted_token(tmp_path):
    from bridgelib.datasets import load_dataset
    from bridgelib.invert import learn_style_token
    overrides = {"invert.checkpoint_every": 4}
    out = tmp_path / "tok" / "learned_embeds.safetensors"
    ckpts = out.parent / "learned_embeds_checkpoints"
    argv = ["invert", "--out", str(out), "--steps", "24", "--shots", "1", "--batch-size", "2"]
    proc = start(argv, tmp_path, overrides)
    kill_when(proc, lambda: any(ckpts.glob("step_*.pt")), tmp_path)
    assert_nothing_partial(out.parent)
    assert not out.exists()
    (ckpts / ".step_000024.pt.crash.tmp").write_bytes(b"PK\x03\x04")  # a kill mid-write

    rerun(argv + ["--resume"], overrides)
    assert assert_nothing_partial(out.parent) == [ckpts / ".step_000024.pt.crash.tmp"]  # ignored
    record = json.loads(out.with_suffix(".json").read_text())
    assert 0 < record["resumed_from"] < 24 and len(record["loss_curve"]) == 24
    got = load_file(out)
    assert list(got) == ["<s*>"] and got["<s*>"].shape == (1, 64)

    cfg = get_config("mini", **overrides)
    ref = tmp_path / "ref" / "learned_embeds.safetensors"
    ref_record = learn_style_token(cfg, load_dataset(cfg, "train", "1", 0, size=32), ref, steps=24,
                                   batch_size=2, seed=0, progress_bar=False)
    assert torch.equal(load_file(ref)["<s*>"], got["<s*>"])  # the project's resume guarantee
    assert ref_record["loss_curve"] == record["loss_curve"]


@pytest.fixture(scope="module")
def killed_train(tmp_path_factory):
    """`bridge train` killed during its real stage, then run again: the run folder."""
    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "run"
    argv = ["train", "--recipe", "vanilla", "--shots", "1", "--seed", "0", "--out", str(out)]
    proc = start(argv, tmp, FAST_TRAIN)
    kill_when(proc, lambda: b"real stage" in (tmp / "train.log").read_bytes(), tmp)
    assert not (out / "metrics.json").exists()  # killed mid-training
    if out.exists():
        assert_nothing_partial(out)
    out.mkdir(exist_ok=True)
    (out / ".metrics.json.crash.tmp").write_text('{"test_acc": 0.')  # a kill mid-write
    rerun(argv, FAST_TRAIN)  # not refused: a folder without metrics.json holds no run
    return out


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """`bridge sweep` over two seeds killed once its first cell is done, then run again."""
    tmp = tmp_path_factory.mktemp("sweep")
    root = tmp / "runs"
    argv = ["sweep", "--recipes", "vanilla", "--shots", "1", "--seeds", "0", "1",
            "--out", str(root)]
    proc = start(argv, tmp, FAST_TRAIN)
    kill_when(proc, lambda: len(list(root.glob("*/metrics.json"))) >= 1, tmp)
    assert_nothing_partial(root)
    (first,) = root.glob("*/metrics.json")
    first_bytes, first_mtime = first.read_bytes(), first.stat().st_mtime_ns
    rerun(argv, FAST_TRAIN)
    return {"root": root, "first": first, "first_bytes": first_bytes, "first_mtime": first_mtime}


def test_train_rerun_after_sigkill_is_complete(killed_train):
    from bridgelib.config import load_config
    out = killed_train
    assert assert_nothing_partial(out) == [out / ".metrics.json.crash.tmp"]  # ignored by readers
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_acc", "per_class_accuracy", "recipe", "seed", "shots"} <= set(metrics)
    assert (metrics["recipe"], metrics["seed"], metrics["shots"]) == ("vanilla", 0, 1)
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns[:5]) == ["stage", "epoch", "train_loss", "train_acc", "test_acc"]
    assert history.stage.tolist() == ["real"] * 3 and history.epoch.tolist() == [1, 2, 3]
    assert history.notna().all().all()
    assert load_config(out / "config.json").train.real.min_steps == 24


def test_sweep_rerun_after_sigkill_has_every_cell(killed_sweep):
    from bridgelib.store import collect_runs
    root = killed_sweep["root"]
    assert assert_nothing_partial(root) == []
    runs = collect_runs(root)
    assert sorted(runs.seed) == [0, 1] and runs.run.is_unique
    assert all(runs.test_acc.between(0, 1))
    results = pd.read_csv(root / "results.csv")
    assert sorted(results.seed) == [0, 1]
    first = killed_sweep["first"]  # the cell finished before the kill is not recomputed
    assert first.read_bytes() == killed_sweep["first_bytes"]
    assert first.stat().st_mtime_ns == killed_sweep["first_mtime"]
    for cell in root.glob("*/metrics.json"):
        assert len(pd.read_csv(cell.parent / "history.csv")) == 3


def test_train_killed_and_rerun_equals_an_uninterrupted_run(killed_train, killed_sweep):
    """The sweep's first cell (vanilla, 1 shot, seed 0) ran uninterrupted in another process."""
    cell = next(p.parent for p in killed_sweep["root"].glob("*/metrics.json")
                if json.loads(p.read_text())["seed"] == 0)
    a = json.loads((killed_train / "metrics.json").read_text())
    b = json.loads((cell / "metrics.json").read_text())
    assert a["test_acc"] == b["test_acc"] and a["per_class_accuracy"] == b["per_class_accuracy"]
    cols = ["stage", "epoch", "train_loss", "train_acc", "test_acc", "images_seen"]
    pd.testing.assert_frame_equal(pd.read_csv(killed_train / "history.csv")[cols],
                                  pd.read_csv(cell / "history.csv")[cols])
