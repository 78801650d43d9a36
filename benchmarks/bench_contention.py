"""Each stage alone and beside one busy PyTorch process on the same cores, with and without
`files.share_cpu` (the package's thread choice), in one command.

    python benchmarks/bench_contention.py --out-json outputs/bench_contention.json

A workshop laptop runs two notebook kernels at once, or a sweep beside a notebook. PyTorch's
default is one thread per core; when another process holds a core, those threads wait for each
other. Each stage runs as a fresh process (its threads are chosen at its start), timed inside it:

- training: `train_stage` of the mini classifier, fixed steps on 512 pool images;
- generation: `generate_synthetic_set`, 10 images per class with the mini generator;
- inversion: `learn_style_token`, a few steps on 16 images per class.

Each is timed alone, then with a competitor running (a process doing 512 x 512 float32 matmuls
with PyTorch's default threads, like a second kernel training), once with the package's choice
and once with `BRIDGELIB_THREADS` = the core count (PyTorch's default, the behaviour before
`share_cpu`). `contended_ratio` = contended seconds / alone seconds, the package's choice; the
target is at most 2.5 (issue 14). Writes the JSON that tools/bench_table.py adds to the table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("training", "generation", "inversion")
COMPETITOR = ("import torch\nx = torch.randn(512, 512)\nwhile True:\n    x = torch.tanh(x @ x)\n")


def job(stage: str) -> float:
    """Run one stage in this process; return its seconds (setup not timed)."""
    import tempfile
    from bridgelib.config import get_config
    from bridgelib.datasets import load_dataset
    from bridgelib.files import set_progress
    set_progress(False)
    cfg = get_config("mini")
    with tempfile.TemporaryDirectory() as tmp:
        if stage == "training":
            from bridgelib.models import create_classifier
            from bridgelib.transfer import Stage, train_stage
            from dataclasses import replace
            pool = load_dataset(cfg, "train", "full", 0).subset(range(512))
            model = create_classifier(cfg, 10)
            stage_cfg = replace(cfg.train.real, steps=60, batch_size=64)
            t = time.perf_counter()
            train_stage(model, Stage("real", pool, stage_cfg, steps=60), None, cfg,
                        eval_epochs=False, eval_last=False)
        elif stage == "generation":
            from bridgelib.generate import generate_synthetic_set
            from bridgelib.pipeline import load_pipeline
            pipe = load_pipeline(cfg)
            t = time.perf_counter()
            generate_synthetic_set(cfg, Path(tmp) / "set", 10, pipe=pipe, progress_bar=False)
        else:
            from bridgelib.invert import learn_style_token
            from bridgelib.pipeline import load_pipeline
            pipe = load_pipeline(cfg)
            images = load_dataset(cfg, "train", 16, 0, size=cfg.generation.resolution)
            t = time.perf_counter()
            learn_style_token(cfg, images, Path(tmp) / "tok.safetensors", steps=40, pipe=pipe,
                              progress_bar=False)
        return time.perf_counter() - t


def timed(stage: str, env: dict, competitor: bool) -> float:
    rival = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if competitor else None
    try:
        if rival is not None:
            time.sleep(1.0)  # it is busy before the stage starts
        out = subprocess.run([sys.executable, __file__, "--job", stage], env=env, check=True,
                             capture_output=True, text=True, timeout=900)
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--job", choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--out-json", default="outputs/bench_contention.json")
    args = p.parse_args()
    if args.job:
        print(f"{job(args.job):.4f}")
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ours = {k: v for k, v in os.environ.items()
            if k not in ("BRIDGELIB_THREADS", "OMP_NUM_THREADS")}
    default = {**ours, "BRIDGELIB_THREADS": str(cores)}
    result = {"cores": cores,
              "competitor": "one process of 512x512 float32 matmuls, default threads"}
    for stage in args.stages:
        alone = timed(stage, ours, False)
        shared = timed(stage, ours, True)
        without = timed(stage, default, True)
        result[stage] = {"alone_s": round(alone, 2), "contended_s": round(shared, 2),
                         "contended_ratio": round(shared / alone, 2),
                         "contended_s_default_threads": round(without, 2),
                         "contended_ratio_default_threads": round(without / alone, 2)}
        print(f"{stage}: alone {alone:.1f} s; beside a busy process {shared:.1f} s "
              f"({shared / alone:.2f}x) with share_cpu, {without:.1f} s ({without / alone:.2f}x) "
              f"with {cores} threads", flush=True)
    Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out_json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
