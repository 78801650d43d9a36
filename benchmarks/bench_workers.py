"""Runs per hour of a sweep trained in 1 process against the same runs in N worker processes.

    python benchmarks/bench_workers.py [--runs 4] [--shots full] [--workers 2] \
        --out-json outputs/bench_workers.json

The store builder (`make results`, tools/build_results_store.py --workers N) trains independent
runs; whether N processes of one thread beat one process of all threads depends on the machine
(small 32 px models keep few threads busy). Both arms train the same runs (vanilla at `--shots`,
training seeds 0..runs-1, the mini profile) into fresh folders, one after the other in this
command, so they share the machine's state; their results agree up to the float rounding of a
different thread count (`same_results` says whether they are equal to 6 decimals). The
builder's plan reads `speedup` from the JSON to estimate its hours.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from bridgelib.config import get_config
from bridgelib.experiments import run_sweep
from bridgelib.files import machine_name, set_progress, write_json


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=4, help="runs per arm (training seeds 0..N-1)")
    p.add_argument("--shots", default="full", help="k-shot subset of every run (default: full)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the second arm")
    p.add_argument("--out-json", default="outputs/bench_workers.json")
    args = p.parse_args(argv)
    if args.runs < 1 or args.workers < 2:
        p.error(f"--runs={args.runs} and --workers={args.workers}: need runs >= 1, workers >= 2")
    return args


def time_sweep(cfg, root: Path, args, workers: int) -> tuple[float, list]:
    t0 = time.perf_counter()
    store = run_sweep(cfg, root, recipes=["vanilla"], shots=[args.shots],
                      seeds=list(range(args.runs)), save_model=False, workers=workers)
    return time.perf_counter() - t0, sorted(store["test_acc"].round(6))


def main(argv=None) -> int:
    args = parse_args(argv)
    set_progress(False)
    cfg = get_config("mini")
    with tempfile.TemporaryDirectory() as tmp:
        one_s, one_acc = time_sweep(cfg, Path(tmp) / "one", args, 1)
        many_s, many_acc = time_sweep(cfg, Path(tmp) / "many", args, args.workers)
    result = {"machine": machine_name(), "python": platform.python_version(),
              "runs": args.runs, "shots": args.shots, "workers": args.workers,
              "seconds_1_worker": round(one_s, 1), f"seconds_{args.workers}_workers": round(many_s, 1),
              "runs_per_hour_1_worker": round(3600 * args.runs / one_s, 1),
              f"runs_per_hour_{args.workers}_workers": round(3600 * args.runs / many_s, 1),
              "speedup": round(one_s / many_s, 3), "same_results": one_acc == many_acc}
    print(result)
    Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out_json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
