"""Faster generation at equal quality: each sampler knob against the 20-step fp32 settings.

    python benchmarks/bench_quality.py --per-class 100 --out-json outputs/bench_quality.json
    python benchmarks/bench_quality.py --knobs all    # every knob on its own, then together

Draws, through `generate_synthetic_set` (files included), a reference set R0 at the 20-step
DPM-Solver++ fp32 settings with run seed 0, the same settings again with run seed 1 (R1: an
independent draw of the same distribution), and each knob's set with run seed 1 (so it shares
R1's per-image starting noise). A knob keeps the images' quality when both hold, on >= 1,000
images:
- recognisability (the shipped judge reads the image as its class) within 1 point of R1's,
  image by image on the same seeds (paired), and
- its judge features no farther from R0's, in Fréchet distance, than R1's are: the 95% bootstrap
  interval of FD(knob, R0) - FD(R1, R0) reaches 0. Images are resampled jointly (the knob's
  image and R1's of the same seed together; R0's on their own), so the upward bias a resampled
  Fréchet distance has (duplicates shrink the covariance) cancels in the difference; an
  interval of the distance alone is dominated by that bias at 1,000 images of 256 features.
Speed is images/s against R1's in the same run. The default settings (`get_config(profile)`)
are always measured; their speedup and verdict are what `make bench` reports.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bridgelib.config import get_config
from bridgelib.datasets import MINI_CLASSES
from bridgelib.files import set_progress, write_json
from bridgelib.folders import load_image_folder
from bridgelib.generate import generate_synthetic_set
from bridgelib.metrics import (BOOTSTRAP_RESAMPLES, backbone_features, bootstrap_interval,
                               frechet_difference_interval, frechet_distance)
from bridgelib.models import input_stats, load_judge
from bridgelib.pipeline import load_pipeline, package_versions

REFERENCE = {"generation.steps": 20, "generation.scheduler": "dpmsolver++", "precision": "fp32"}
KNOBS = {  # each on its own, then the combinations worth a default
    "10 steps": {"generation.steps": 10},
    "12 steps": {"generation.steps": 12},
    "UniPC, 10 steps": {"generation.scheduler": "UniPCMultistepScheduler", "generation.steps": 10},
    "UniPC, 8 steps": {"generation.scheduler": "UniPCMultistepScheduler", "generation.steps": 8},
    "bf16 autocast": {"precision": "auto"},
    "batch 200": {"generation.batch_size": 200},
    "10 steps + bf16": {"generation.steps": 10, "precision": "auto"},
    "UniPC 8 steps + bf16": {"generation.scheduler": "UniPCMultistepScheduler",
                             "generation.steps": 8, "precision": "auto"},
}
MAX_POINTS = 1.0      # recognisability may differ from the reference's by at most this
BOOTSTRAP = BOOTSTRAP_RESAMPLES  # BCa resamples (scipy.stats.bootstrap) for every interval


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="mini", help="config profile (default: mini; the judge "
                   "and its features are the mini world's)")
    p.add_argument("--per-class", type=int, default=100, help="images per class of every set "
                   "(default 100: 1,000 images)")
    p.add_argument("--knobs", default="default", help="'default' (the profile's settings only), "
                   "'all', or comma-separated names of: " + ", ".join(KNOBS))
    p.add_argument("--out-json", default="outputs/bench_quality.json")
    return p.parse_args(argv)


def draw(profile: str, overrides: dict, out: Path, per_class: int, seed: int) -> tuple[Path, float]:
    """One set through the package's own entry point; seconds after a warm-up batch."""
    cfg = get_config(profile, **overrides)
    pipe = load_pipeline(cfg)
    generate_synthetic_set(cfg, out.with_name(out.name + "-warmup"), 1, seed=99, pipe=pipe,
                           progress_bar=False)
    t0 = time.perf_counter()
    generate_synthetic_set(cfg, out, per_class, seed=seed, pipe=pipe, progress_bar=False)
    return out, time.perf_counter() - t0


def judged(folder: Path, cfg, judge) -> tuple[np.ndarray, np.ndarray]:
    """Per image: whether the judge reads it as its class, and the judge's features."""
    images = load_image_folder(folder, 32, list(MINI_CLASSES))
    mean, std = input_stats(judge)
    with torch.no_grad():
        logits = torch.cat([judge((images.images[i:i + 500].float() / 255 - mean) / std)
                            for i in range(0, len(images.images), 500)])
    hit = (logits.argmax(1) == images.labels).numpy()
    return hit, backbone_features(images.images, cfg, model=judge)


def fd_difference_ci(knob: np.ndarray, second: np.ndarray, ref: np.ndarray,
                     seed: int = 0) -> tuple[float, float]:
    """95% BCa interval (scipy.stats.bootstrap) of FD(knob, ref) - FD(second, ref); `knob` and
    `second` are paired row by row (same seeds) and resampled together, `ref` on its own."""
    ci = frechet_difference_interval(knob, second, ref, paired=True, n_resamples=BOOTSTRAP,
                                     seed=seed)
    return ci["low"], ci["high"]


def paired_points(hit: np.ndarray, ref: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% BCa interval (scipy.stats.bootstrap) of the recognisability difference (points),
    the same seeds paired."""
    ci = bootstrap_interval(lambda a, b, axis: a.mean(axis) - b.mean(axis),
                            (hit.astype(float), ref.astype(float)), paired=True, vectorized=True,
                            n_resamples=BOOTSTRAP, seed=seed)
    return 100 * ci["low"], 100 * ci["high"]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    set_progress(False)
    names = list(KNOBS) if args.knobs == "all" else \
        [] if args.knobs == "default" else [k.strip() for k in args.knobs.split(",")]
    unknown = [k for k in names if k not in KNOBS]
    if unknown:
        raise SystemExit(f"unknown knob {unknown[0]!r}; valid: default, all, {', '.join(KNOBS)}")
    defaults = get_config(args.profile)
    default_overrides = {"generation.steps": defaults.generation.steps,
                         "generation.scheduler": defaults.generation.scheduler,
                         "precision": defaults.precision}
    settings = {"default": default_overrides, **{k: KNOBS[k] for k in names}}
    cfg, judge = get_config(args.profile), load_judge()
    with tempfile.TemporaryDirectory() as tmp:
        r0, _ = draw(args.profile, REFERENCE, Path(tmp) / "r0", args.per_class, seed=0)
        r1, t_ref = draw(args.profile, REFERENCE, Path(tmp) / "r1", args.per_class, seed=1)
        hit0, f0 = judged(r0, cfg, judge)
        hit1, f1 = judged(r1, cfg, judge)
        n = len(hit1)
        fd1 = frechet_distance(f1, f0)  # how far a second draw of the reference lies
        rows = {}
        for name, overrides in settings.items():
            folder, t = draw(args.profile, {**REFERENCE, **overrides}, Path(tmp) / f"k{len(rows)}",
                             args.per_class, seed=1)
            hit, f = judged(folder, cfg, judge)
            fd = frechet_distance(f, f0)
            fd_ci = fd_difference_ci(f, f1, f0, seed=len(rows))
            diff = 100 * (hit.mean() - hit1.mean())
            rows[name] = {
                "overrides": overrides, "images_per_s": round(n / t, 3),
                "speedup_vs_20step_fp32": round(t_ref / t, 3),
                "recognisability": round(float(hit.mean()), 4),
                "recognisability_diff_points": round(float(diff), 2),
                "recognisability_diff_ci": [round(x, 2) for x in paired_points(hit, hit1, seed=len(rows))],
                "fd_to_reference": round(fd, 3), "fd_minus_second_draw": round(fd - fd1, 3),
                "fd_minus_second_draw_ci": [round(x, 3) for x in fd_ci],
                "quality_ok": bool(abs(round(diff, 6)) <= MAX_POINTS and fd_ci[0] <= 0)}
            r = rows[name]
            print(f"{name:22s} {r['images_per_s']:6.2f} img/s {r['speedup_vs_20step_fp32']:5.2f}x  "
                  f"judge {diff:+5.2f} pts [{r['recognisability_diff_ci'][0]:+.2f}, "
                  f"{r['recognisability_diff_ci'][1]:+.2f}]  FD {fd - fd1:+.3f} "
                  f"[{fd_ci[0]:+.3f}, {fd_ci[1]:+.3f}] vs a second draw  "
                  f"{'ok' if r['quality_ok'] else 'NOT equal quality'}", flush=True)
    result = {
        "images": n, "per_class": args.per_class, "profile": args.profile,
        "reference": {"overrides": REFERENCE, "images_per_s": round(n / t_ref, 3),
                      "recognisability": round(float(hit1.mean()), 4)},
        "fd_second_draw": round(fd1, 3),
        "settings": rows, "speedup_vs_20step_fp32": rows["default"]["speedup_vs_20step_fp32"],
        "quality_ok": rows["default"]["quality_ok"], "torch_threads": torch.get_num_threads(),
        "versions": package_versions()}
    print(f"reference (20-step fp32): {result['reference']['images_per_s']:.2f} img/s, judge "
          f"{hit1.mean():.3f}; Fréchet distance of a second draw to the first {fd1:.3f}")
    if args.out_json:
        write_json(args.out_json, result)
        print(f"wrote {args.out_json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
