"""Training throughput of `train_stage` against a plain torchvision ImageFolder + DataLoader loop.

    python benchmarks/bench_train.py --images 512 --batch-size 64 --steps 40 \
        --out-json outputs/bench_train.json

Both paths train the profile's classifier (`create_classifier(cfg, 10)`, 32 px) from the same
initial weights, with the same batch size, number of optimizer steps and optimizer (SGD, Nesterov
momentum, weight decay, cosine decay), in the same process:

(a) the package: `train_stage` on an ImageSet decoded once into uint8 tensors, augmented per batch
    on tensors (random shift up to 4 px, white fill);
(b) a plain baseline: the same images written as PNGs to a temporary ImageFolder, read by
    `torchvision.datasets.ImageFolder` with a PIL pipeline (RandomCrop(32, padding=4, fill=255),
    ToTensor, Normalize with the model's mean/std) through `DataLoader(shuffle=True,
    num_workers=0)`.

Each path gets a short warm-up first (not timed). Decoding the set and writing the PNGs are not
timed either: only the training loops. Prints images/s of each and the ratio (a)/(b), and writes
them as JSON.
"""
from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bridgelib.config import get_config
from bridgelib.data import ImageSet
from bridgelib.files import resolve_device, set_progress, write_json
from bridgelib.mini.fashion import load_mini_part
from bridgelib.models import create_classifier, input_stats
from bridgelib.transfer import Stage, train_stage

import utilisation  # benchmarks/utilisation.py: this script's folder is on sys.path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="mini", help="config profile (default: mini)")
    p.add_argument("--images", type=int, default=512, help="images in the training set")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per timed run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each path")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed runs per path, alternating (a) and (b); the median is reported")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--out-json", default="outputs/bench_train.json")
    args = p.parse_args(argv)
    for name in ("images", "batch_size", "steps", "repeats"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} is invalid; expected > 0")
    if args.warmup < 0:
        p.error(f"--warmup={args.warmup} is invalid; expected >= 0")
    return args


def benchmark_images(n: int) -> ImageSet:
    """`n` real images (32 px uint8) from the training pool, repeated if the pool is smaller."""
    pool = load_mini_part("pool")
    return pool.subset(torch.arange(n) % len(pool))


def write_image_folder(data: ImageSet, root: Path) -> Path:
    """The set as PNGs in `root/<class>/<i>.png` (what torchvision's ImageFolder reads)."""
    from PIL import Image
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        folder = root / f"{int(label):02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return root


def make_optimizer(model, stage_cfg, steps: int):
    """The optimizer and schedule `train_stage` uses, for the baseline."""
    opt = torch.optim.SGD(model.parameters(), lr=stage_cfg.lr, momentum=stage_cfg.momentum,
                          nesterov=True, weight_decay=stage_cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)


def package_path(model, data: ImageSet, cfg, stage_cfg, steps: int) -> float:
    """Seconds for `steps` optimizer steps of `train_stage` (no evaluation)."""
    stage = Stage("bench", data, stage_cfg, steps=steps)
    t0 = time.perf_counter()
    train_stage(model, stage, None, cfg, seed=0, eval_epochs=False, eval_last=False)
    _sync(cfg)
    return time.perf_counter() - t0


def torchvision_path(model, folder: Path, cfg, stage_cfg, steps: int) -> float:
    """Seconds for `steps` optimizer steps of a plain ImageFolder + DataLoader loop."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    device = resolve_device(cfg.device)
    mean, std = (t.flatten().tolist() for t in input_stats(model))
    transform = transforms.Compose([
        transforms.RandomCrop(cfg.image_size, padding=4, fill=255),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    loader = DataLoader(dataset, batch_size=stage_cfg.batch_size, shuffle=True, num_workers=0,
                        drop_last=len(dataset) >= stage_cfg.batch_size)
    model.to(device).train()
    opt, sched = make_optimizer(model, stage_cfg, steps)
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss.item()  # the package's loop reads the loss every step too
            done += 1
            if done == steps:
                break
    _sync(cfg)
    return time.perf_counter() - t0


def _sync(cfg) -> None:
    if resolve_device(cfg.device).type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_progress(False)
    cfg = get_config(args.profile, **{"train.real.batch_size": args.batch_size})
    if cfg.image_size != 32:
        cfg.image_size = 32  # this benchmark is about the 32-px mini world
    stage_cfg = cfg.train.real
    data = benchmark_images(args.images)
    torch.manual_seed(0)
    initial = create_classifier(cfg, 10)
    times = {"package": [], "torchvision": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_image_folder(data, Path(tmp) / "images")
        if args.warmup:
            package_path(copy.deepcopy(initial), data, cfg, stage_cfg, args.warmup)
            torchvision_path(copy.deepcopy(initial), folder, cfg, stage_cfg, args.warmup)
        for _ in range(args.repeats):
            times["package"].append(
                package_path(copy.deepcopy(initial), data, cfg, stage_cfg, args.steps))
            times["torchvision"].append(
                torchvision_path(copy.deepcopy(initial), folder, cfg, stage_cfg, args.steps))
    seen = args.steps * args.batch_size
    rate = {k: seen / statistics.median(v) for k, v in times.items()}
    result = {
        "images": args.images, "batch_size": args.batch_size, "steps": args.steps,
        "warmup": args.warmup, "repeats": args.repeats, "image_size": cfg.image_size,
        "profile": cfg.profile, "backbone": cfg.backbone, "augment": cfg.augment,
        "package_images_per_s": round(rate["package"], 1),
        "torchvision_images_per_s": round(rate["torchvision"], 1),
        "ratio": round(rate["package"] / rate["torchvision"], 3),
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "threads": torch.get_num_threads(), "device": str(resolve_device(cfg.device)),
        "torch": torch.__version__, "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    # FLOPs counted after the timing (the counter slows what it watches), attainable measured now
    result.update(utilisation.measure(
        utilisation.training_flops_per_image(cfg, initial, data, stage_cfg),
        rate["package"], resolve_device(cfg.device), threads=result["threads"]))
    print(f"(a) train_stage on decoded uint8 tensors: {result['package_images_per_s']:.1f} images/s")
    print(f"(b) torchvision ImageFolder + DataLoader: {result['torchvision_images_per_s']:.1f} images/s")
    print(f"ratio (a)/(b): {result['ratio']:.2f}  "
          f"({args.steps} steps x {args.batch_size} images, {result['threads']} thread(s), "
          f"{result['device']})")
    print(utilisation.summary(result, "image"))
    assert math.isfinite(result["ratio"])
    write_json(args.out_json, result)
    return result


if __name__ == "__main__":
    main()
