"""Two CPU processes (torchrun, gloo): a generation split between them writes, and resumes, the
set one process writes; a training run under DDP keeps one process's steps and writes once.

Launched as users launch on GPUs: `accelerate launch --multi_gpu` is torchrun underneath, and
`accelerate launch --cpu` would start one process only (its --cpu path always uses the
single-process launcher; checked with accelerate 1.15).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridgelib.config import get_config
from bridgelib.generate import generate_synthetic_set
from bridgelib.manifest import read_manifest
from bridgelib.transfer import train_run
from cli_helpers import write_folder

pytestmark = pytest.mark.slow  # two Python processes start per test; `-m "not slow"` skips

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["digit one", "digit seven", "letter a"]

GENERATE = f"""
import sys
from bridgelib.config import get_config
from bridgelib.generate import generate_synthetic_set
model, out = sys.argv[1:]
cfg = get_config("mini", device="cpu", **{{"generation.model": model, "generation.steps": 2}})
generate_synthetic_set(cfg, out, 3, class_names={CLASSES!r}, batch_size=2, progress_bar=False)
"""

TRAIN = """
import json, os, sys
from bridgelib import files, transfer
from bridgelib.config import get_config
root, out, overrides = sys.argv[1:]
writes = []
def logged(write):
    return lambda path, data: (writes.append(str(path)), write(path, data))[1]
files.atomic_write_bytes = logged(files.atomic_write_bytes)  # what write_json and cfg.save use
transfer.atomic_write_bytes = logged(transfer.atomic_write_bytes)
cfg = get_config("paper", **json.loads(overrides))
metrics = transfer.train_run(cfg, "bridged++", out, shots=2, pretrained=False,
                             synthetic_dir=os.path.join(root, "synthetic"))
with open(os.path.join(root, f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"writes": writes, "stages": metrics["stages"]}, f)
"""


def launch(tmp_path: Path, code: str, *args) -> None:
    script = tmp_path / "driver.py"
    script.write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "BRIDGELIB_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2", str(script), *map(str, args)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


def pixels(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.asarray(Image.open(p).convert("RGB")).astype(int)
            for p in sorted(out.glob("*/*.png"))}


def test_two_processes_generate_the_one_process_set_and_resume(tiny_model, tmp_path):
    cfg = get_config("mini", device="cpu",  # gloo; a GPU machine too tests the CPU path
                     **{"generation.model": str(tiny_model), "generation.steps": 2})
    kw = dict(class_names=CLASSES, batch_size=2, progress_bar=False)
    one = generate_synthetic_set(cfg, tmp_path / "one", 3, **kw)
    # Half-done folder: one image per class from an earlier run, class 1's row still in the
    # manifest part of an interrupted launch. The launch must keep these and draw the rest.
    two = generate_synthetic_set(cfg, tmp_path / "two", 1, **kw)
    lines = (two / "metadata.jsonl").read_text().splitlines()
    (two / "metadata.jsonl").write_text("\n".join(lines[::2]) + "\n")
    (two / "metadata.rank1.jsonl").write_text(lines[1] + "\n")
    kept = {p: p.stat().st_ino for p in two.glob("*/*.png")}

    launch(tmp_path, GENERATE, tiny_model, two)

    assert sorted(p.name for p in two.iterdir() if p.is_file()) == ["README.md", "metadata.jsonl",
                                                                    "run.json"]
    assert len(kept) == 3 and all(p.stat().st_ino == ino for p, ino in kept.items())  # kept
    ref, got = read_manifest(one), read_manifest(two)
    assert got.to_dict("records") == ref.to_dict("records")  # every column, in the same order
    run = json.loads((two / "run.json").read_text())
    assert run["request"]["processes"] == 2  # both took a share, not both all of it
    assert run["result"]["images"] == 9 and run["result"]["generated"] == 6
    # The tolerance of batch-size invariance (tests/test_generate.py): the images a process
    # batches together change, so uint8 pixels may differ by 1 on under 0.1% of the values.
    a, b = pixels(one), pixels(two)
    assert sorted(a) == sorted(b) == sorted(ref.file_name)
    diff = np.stack([np.abs(a[k] - b[k]) for k in a])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_two_process_training_keeps_the_steps_and_rank_0_writes(tmp_path):
    write_folder(tmp_path / "data" / "train", 4, 0)
    write_folder(tmp_path / "data" / "test", 2, 1)
    write_folder(tmp_path / "synthetic", 4, 2)
    overrides = {"dataset": "imagefolder", "data_root": str(tmp_path / "data"), "image_size": 32,
                 "device": "cpu", "train.real.epochs": 2, "train.real.batch_size": 4,
                 "train.synthetic.epochs": 1, "train.synthetic.batch_size": 4}
    launch(tmp_path, TRAIN, tmp_path, tmp_path / "run", json.dumps(overrides))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(Path(p).name for p in ranks[0]["writes"]) == \
        ["config.json", "history.csv", "imagefolder_2shot_seed0.json", "metrics.json"]
    assert ranks[1]["writes"] == []  # it read the k-shot split file rank 0 wrote
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["test_acc"] <= 1 and metrics["recipe"] == "bridged++"
    one = train_run(get_config("paper", **overrides), "bridged++", tmp_path / "one", shots=2,
                    pretrained=False, synthetic_dir=tmp_path / "synthetic")
    # Each process trains on half of every batch: steps and images seen are one process's.
    seen = [[s["images_seen"] for s in stages] for stages in
            (metrics["stages"], ranks[1]["stages"], one["stages"])]
    assert seen == [[12, 16]] * 3
