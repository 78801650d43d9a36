"""Throughput of `generate_synthetic_set` against a plain one-image-per-call loop.

    python benchmarks/bench_generate.py --images 40 --out-json outputs/bench_generate.json

(a) `generate_synthetic_set` at its defaults (the config's batch size unless --batch-size),
including PNG encoding, atomic writes and the manifest; (b) the same pipeline called once per
image with the same prompts, seeds, steps and guidance, images kept in memory. Both run after
one warm-up call. Prints images/s for each and their ratio, and writes them as JSON.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from bridgelib.config import get_config
from bridgelib.files import set_progress, write_json
from bridgelib.generate import generate_synthetic_set
from bridgelib.manifest import image_seed, read_manifest
from bridgelib.pipeline import load_pipeline, package_versions

import utilisation  # benchmarks/utilisation.py: this script's folder is on sys.path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="mini", help="config profile (default: mini)")
    p.add_argument("--model", default=None, help="diffusers folder or hub id "
                   "(default: the profile's generation.model)")
    p.add_argument("--images", type=int, default=40, help="images in total, spread over the "
                   "dataset's classes (rounded up to a multiple of the class count)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size of generate_synthetic_set (default: the config's)")
    p.add_argument("--steps", type=int, default=None, help="inference steps (default: config)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet "
                   "(generation.compile; the compile time is in the warm-up, not the timing)")
    p.add_argument("--channels-last", action="store_true",
                   help="UNet and VAE in channels-last memory format (on a GPU)")
    p.add_argument("--out-json", default="outputs/bench_generate.json")
    return p.parse_args(argv)


# SD v1.5, 512 px, fp16, batch 16 on one A100: about 1.5 images/s, the anchor issue 14 quotes
# for `--profile paper` (not measured here: this project has had no GPU).
ANCHOR_IMAGES_PER_S = {"paper": 1.5}


def plain_loop(pipe, cfg, rows) -> float:
    """Seconds for one pipeline call per image (same prompt, seed, steps, guidance)."""
    g, device = cfg.generation, "cuda" if pipe.device.type == "cuda" else "cpu"
    t0 = time.perf_counter()
    for row in rows:
        pipe(prompt=row["prompt"], num_inference_steps=row["num_inference_steps"],
             guidance_scale=row["guidance_scale"], height=g.resolution, width=g.resolution,
             negative_prompt=row["negative_prompt"] or None, output_type="pil",
             generator=torch.Generator(device).manual_seed(row["seed"]))
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    overrides = {k: v for k, v in (("generation.model", args.model),
                                   ("generation.steps", args.steps)) if v is not None}
    cfg = get_config(args.profile, **overrides, **{"generation.compile": args.compile})
    set_progress(False)
    pipe = load_pipeline(cfg)
    if args.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    # The garment names in every profile: throughput does not depend on the words, and the
    # benchmark then needs no dataset on disk (the paper profile's classes come from one).
    from bridgelib.datasets import MINI_CLASSES
    classes, n_classes = list(MINI_CLASSES), len(MINI_CLASSES)
    per_class = max(1, math.ceil(args.images / n_classes))
    g = cfg.generation
    pipe(prompt="A good photo of the sneaker", num_inference_steps=g.steps,  # warm-up
         guidance_scale=g.guidance, height=g.resolution, width=g.resolution,
         generator=torch.Generator(pipe.device.type).manual_seed(image_seed(1, 0, 0)))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_synthetic_set(cfg, Path(tmp) / "set", per_class, class_names=classes,
                               batch_size=args.batch_size, pipe=pipe, progress_bar=False)
        t_set = time.perf_counter() - t0
        rows = read_manifest(Path(tmp) / "set").to_dict("records")
    t_loop = plain_loop(pipe, cfg, rows)
    n = len(rows)
    result = {
        "images": n, "per_class": per_class, "model": g.model, "steps": g.steps,
        "guidance": g.guidance, "resolution": g.resolution,
        "batch_size": args.batch_size or g.batch_size, "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or
        platform.machine(), "generate_seconds": round(t_set, 3),
        "loop_seconds": round(t_loop, 3), "generate_images_per_s": round(n / t_set, 3),
        "loop_images_per_s": round(n / t_loop, 3), "speedup": round(t_loop / t_set, 3),
        "versions": package_versions()}
    # FLOPs counted after the timing (the counter slows what it watches), attainable measured now
    result.update(utilisation.measure(
        utilisation.generation_flops_per_image(cfg, pipe, args.batch_size),
        result["generate_images_per_s"], pipe.device, threads=result["torch_threads"]))
    print(f"generate_synthetic_set: {result['generate_images_per_s']:.2f} img/s "
          f"(batch {result['batch_size']}, {n} images, files included)")
    print(f"plain loop:             {result['loop_images_per_s']:.2f} img/s (1 image per call)")
    print(f"ratio:                  {result['speedup']:.2f}x")
    print(utilisation.summary(result, "image"))
    if args.out_json:
        write_json(args.out_json, result)
        print(f"wrote {args.out_json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
