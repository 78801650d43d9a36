"""bf16 autocast against fp32 on this CPU: is `precision: auto`'s choice the faster one here?

    python benchmarks/bench_precision.py --images-per-class 20 --repeats 2

In one process: a 2048^3 matmul in each (`utilisation.attainable_flops`, best of 5); then,
alternating (bf16, fp32) `--repeats` times, the mini world's generation
(`generate_synthetic_set`, `--images-per-class` x 10 classes, fresh seeds each repeat so nothing
is read from a cache) and a 10-shot vanilla training run (`train_run`), each with the config's `precision` set to "fp32" or forced to bf16 autocast
(`files.cpu_has_amx` taken as true). Prints seconds and the bf16/fp32 speed ratios (above 1:
bf16 faster) and which one `precision: auto` picks on this CPU; writes them as JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from unittest.mock import patch

import torch

from bridgelib import files
from bridgelib.config import get_config
from bridgelib.generate import generate_synthetic_set
from bridgelib.pipeline import load_pipeline
from bridgelib.transfer import train_run

import utilisation  # benchmarks/utilisation.py: this script's folder is on sys.path


def one_round(precision: str, work: Path, per_class: int, seed: int) -> dict:
    """Seconds to generate and to train with `precision` ('bf16' forced or 'fp32')."""
    forced = (patch.object(files, "cpu_has_amx", lambda: True) if precision == "bf16"
              else contextlib.nullcontext())
    with forced:
        cfg = get_config("mini", precision="auto" if precision == "bf16" else "fp32")
        pipe = load_pipeline(cfg)
        t = time.perf_counter()
        generate_synthetic_set(cfg, work / f"gen-{precision}-{seed}", per_class, pipe=pipe,
                               seed=seed, progress_bar=False)
        generate_s = time.perf_counter() - t
        t = time.perf_counter()
        train_run(cfg, "vanilla", work / f"train-{precision}-{seed}", shots=10, seed=seed,
                  save_model=False)
        return {"generate_s": generate_s, "train_s": time.perf_counter() - t}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images-per-class", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out-json", default="outputs/bench_precision.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*the test split has")
    out = {"auto_picks": "bf16" if files.bf16_autocast(torch.device("cpu")) else "fp32",
           "amx": files.cpu_has_amx(),
           "matmul_gflops": utilisation.attainable_flops("cpu")}
    rounds = {"bf16": [], "fp32": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for precision in ("bf16", "fp32"):
                rounds[precision].append(one_round(precision, Path(tmp), args.images_per_class,
                                                   seed=100 + r))
                print(precision, r, {k: round(v, 2) for k, v in rounds[precision][-1].items()},
                      flush=True)
    for stage in ("generate_s", "train_s"):
        med = {k: statistics.median(x[stage] for x in v) for k, v in rounds.items()}
        out[stage] = med
        out[stage.replace("_s", "_bf16_speed_ratio")] = med["fp32"] / med["bf16"]
    mm = out["matmul_gflops"]
    out["matmul_bf16_speed_ratio"] = mm["bf16"] / mm["fp32"]
    print(f"bf16/fp32 speed: matmul {out['matmul_bf16_speed_ratio']:.2f}x "
          f"({mm['bf16']:.0f} vs {mm['fp32']:.0f} GFLOP/s), generation "
          f"{out['generate_bf16_speed_ratio']:.2f}x, training {out['train_bf16_speed_ratio']:.2f}x; "
          f"AMX {out['amx']}, precision auto picks {out['auto_picks']}")
    files.write_json(args.out_json, out)
    return out


if __name__ == "__main__":
    main()
