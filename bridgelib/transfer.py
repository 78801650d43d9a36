"""Transfer recipes: vanilla, mixed, bridged, bridged + head reset, bridged++ (paper, Table 1),
and synthetic-only (the synthetic stage alone, scored on the real test set: how much the
generator alone can teach, the field's classification accuracy score).

Every recipe is a list of stages run by one training loop (`train_stage`):

| recipe          | stage 1                          | stage 2                                  |
|-----------------|----------------------------------|------------------------------------------|
| vanilla         | real                             |                                          |
| mixed           | real + synthetic                 |                                          |
| bridged         | synthetic                        | real                                     |
| bridged-reinit  | synthetic                        | head re-initialised, then real           |
| bridged++       | synthetic with Mixup             | head re-initialised, then real           |
| synthetic-only  | synthetic                        |                                          |

Budget accounting (ours; the paper gives none): `mixed` trains for as many optimizer steps as
bridged's two stages together, so it sees the same number of images (`train.mixed_budget`
"bridged"); with "epochs" it trains the real stage's epochs over the union instead, so each real
image gets as many passes as in vanilla (at 15 synthetic per real the first budget gives each
real image about a third of vanilla's passes: part of "mixed hurts" could be under-training).

Launched on several processes (`accelerate launch --multi_gpu --num_processes N -m bridgelib.cli
train ...`), each stage trains a DistributedDataParallel copy per process on its slice of every
batch; rank 0 alone writes the run's files.

Taught in notebooks 01, 03, 07.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bridgelib.config import Config, StageConfig, load_config
from bridgelib.data import ImageSet, StreamSet, augment, join_sets
from bridgelib.datasets import load_dataset
from bridgelib.files import (atomic_write_bytes, autocast, bf16_autocast, check_writable,
                             machine_name, process_state, progress, resolve_device, share_cpu,
                             write_json)
from bridgelib.locks import LOCK_NAME
from bridgelib.folders import load_image_folder, warn_polarity_gap, warn_small_test_split
from bridgelib.manifest import trained_on
from bridgelib.metrics import model_leep
from bridgelib.models import (CLASSIFIER_DIR, LEGACY_CLASSIFIER_CONFIG, LEGACY_CLASSIFIER_FILE,
                              check_classifier_folder, create_classifier, evaluate, input_stats, reinit_head,
                              save_classifier, weights_source)
from bridgelib.splits import parse_shots

# Heavy third-party modules (accelerate) are imported inside the functions that use them, so that
# `import bridgelib` and `bridge --help` do not load them.

RECIPES = ("vanilla", "mixed", "bridged", "bridged-reinit", "bridged++", "synthetic-only")


@dataclass
class Stage:
    name: str                  # "synthetic" | "real" | "mixed": the `stage` column of history.csv
    data: ImageSet
    cfg: StageConfig
    reinit_head: bool = False  # re-initialise the classifier head before this stage
    steps: int | None = None   # fixed optimizer steps (else epochs x batches per epoch)
    mixup_alpha: float = 0.0   # Mixup in this stage (bridged++'s synthetic stage: train.mixup_alpha)


def check_recipe(recipe: str, synthetic: ImageSet | None) -> None:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    if recipe != "vanilla" and synthetic is None:
        raise ValueError(f"recipe {recipe!r} needs a synthetic set (--synthetic DIR); "
                         f"only 'vanilla' trains on real images alone")


def plan_stages(recipe: str, real: ImageSet, synthetic: ImageSet | None, cfg: Config) -> list[Stage]:
    """The stages of a recipe, in order."""
    check_recipe(recipe, synthetic)
    real_stage = Stage("real", real, cfg.train.real)
    if recipe == "vanilla":
        if cfg.train.match_compute and synthetic is not None:  # the bridged recipes' budget
            real_stage.steps = stage_steps(Stage("synthetic", synthetic, cfg.train.synthetic)) \
                + stage_steps(real_stage)
        return [real_stage]
    if synthetic.class_names != real.class_names:
        raise ValueError(f"synthetic classes {synthetic.class_names} do not match the real "
                         f"dataset's {real.class_names}")
    syn_stage = Stage("synthetic", synthetic, cfg.train.synthetic,
                      mixup_alpha=cfg.train.mixup_alpha if recipe == "bridged++" else 0.0)
    if recipe == "synthetic-only":
        return [syn_stage]
    if recipe == "mixed":
        budget = stage_steps(syn_stage) + stage_steps(real_stage)
        frac = cfg.train.mixed_real_fraction
        if frac is not None:  # keep a seeded subset of synthetic images: real share = frac
            n_syn = min(len(synthetic), max(1, round(len(real) * (1 - frac) / frac)))
            keep = torch.randperm(len(synthetic), generator=torch.Generator().manual_seed(0))
            synthetic = synthetic.subset(keep[:n_syn].sort().values)
        both = join_sets(real, synthetic)
        mixed_cfg = replace(cfg.train.real, batch_size=cfg.train.synthetic.batch_size)
        if cfg.train.mixed_budget == "epochs":
            budget = stage_steps(Stage("mixed", both, mixed_cfg))
        return [Stage("mixed", both, mixed_cfg, steps=budget)]
    real_stage.reinit_head = recipe in ("bridged-reinit", "bridged++")
    return [syn_stage, real_stage]


def stage_steps(stage: Stage) -> int:
    """Optimizer steps of a stage: fixed (the stage's or its config's `steps`), else epochs x
    batches with a floor for tiny few-shot sets."""
    if stage.steps is not None:
        return stage.steps
    if stage.cfg.steps is not None:
        return stage.cfg.steps
    per_epoch = math.ceil(len(stage.data) / stage.cfg.batch_size)
    return max(per_epoch * stage.cfg.epochs, stage.cfg.min_steps)


def run_recipe(cfg: Config, recipe: str, real: ImageSet, test: ImageSet,
               synthetic: ImageSet | None = None, seed: int = 0, pretrained: bool = True,
               model: nn.Module | None = None, track_test: bool = True,
               after_stage=None, score_last: bool = True) -> tuple[nn.Module, pd.DataFrame]:
    """Fine-tune the profile's backbone with `recipe`; returns the model and its history.

    Per-epoch test accuracy is read on `monitor_subset(test)`; the last row's on the whole test
    set (score_last=False leaves it to the caller). track_test=False skips the per-epoch accuracy
    (faster sweeps; the final one is kept).
    after_stage(stage, model), if given, is called at the end of every stage (e.g. for LEEP).
    """
    stages = plan_stages(recipe, real, synthetic, cfg)
    torch.manual_seed(seed)
    model = model or create_classifier(cfg, len(real.class_names), pretrained=pretrained)
    monitor, rows = monitor_subset(test, cfg.monitor_images), []
    for i, stage in enumerate(stages):
        if stage.reinit_head:
            reinit_head(model, seed=seed + 1000)
        rows += train_stage(model, stage, monitor, cfg, seed=seed + i, eval_epochs=track_test,
                            eval_last=False)
        if after_stage is not None:
            after_stage(stage, model)
    if score_last:
        rows[-1]["test_acc"] = evaluate(model, test, cfg)["accuracy"]
    return model, pd.DataFrame(rows)


def monitor_subset(test: ImageSet, n: int | None) -> ImageSet:
    """A fixed, class-balanced subset of n test images (the same for every run), or all."""
    if n is None or n >= len(test):
        return test
    labels = test.labels.numpy()
    per_class = max(1, n // len(test.class_names))
    rng = np.random.default_rng(0)
    idx = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(len(test.class_names))]
    return test.subset(np.sort(np.concatenate(idx)))


def train_stage(model: nn.Module, stage: Stage, test: ImageSet | None, cfg: Config,
                seed: int = 0, eval_epochs: bool = True, eval_last: bool = True) -> list[dict]:
    """Fine-tune the whole network on one stage's images: SGD + momentum, cosine decay.

    Returns one history row per epoch (or per 1/10 of a fixed-step stage). On N processes the
    batches are the ones one process draws, each process taking every N-th image of each: the
    steps, the learning-rate schedule and the images seen stay those of one process.
    """
    accel = _accelerator(cfg)
    device = accel.device if accel else resolve_device(cfg.device)
    share_cpu(device)  # threads for the cores free now: a second busy process must not stall us
    model.to(device, memory_format=torch.channels_last).train()  # faster convs on CPU and GPU
    c = stage.cfg
    total = stage_steps(stage)
    per_epoch = max(1, math.ceil(total / c.epochs)) if stage.steps is None else max(1, total // 10)
    opt = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=True,
                          weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    net = accel.prepare_model(model) if accel else model  # DDP: gradients averaged over processes
    part = slice(accel.process_index, None, accel.num_processes) if accel else slice(None)
    mean, std = (t.to(device) for t in input_stats(model))
    gen = torch.Generator().manual_seed(seed)  # same on every process: same batches, same Mixup
    streamed = isinstance(stage.data, StreamSet)  # too large to hold decoded: read from disk
    if streamed:  # decoded and augmented in cfg.num_workers workers; Mixup keeps `gen`
        batches = iter(stage.data.loader(_Steps(len(stage.data), c.batch_size, total, seed),
                                         cfg.augment, seed, cfg.num_workers,
                                         pin_memory=device.type == "cuda"))
    else:
        batches = _batch_stream(len(stage.data), c.batch_size, gen)
    rows, seen, loss_sum, correct, count, t0 = [], 0, 0.0, 0, 0, time.time()
    steps = range(total)
    if accel is None or accel.is_main_process:  # one progress bar, not one per process
        steps = progress(steps, desc=f"{stage.name} stage", leave=False)
    for step in steps:
        if streamed:
            images, y = next(batches)
            x = (images.to(device, non_blocking=True).float() / 255 - mean) / std
            y = y.to(device)
        else:
            idx = next(batches)
            x = (augment(stage.data.images[idx].to(device).float() / 255, cfg.augment, gen) - mean) / std
            y = stage.data.labels[idx].to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg.precision):
            logits, loss = _forward(net, x, y, stage.mixup_alpha, gen, part)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        if not math.isfinite(value):  # never a NaN model saved as a result
            raise RuntimeError(_diverged(stage, step, value))
        opt.step()
        sched.step()
        seen += len(y)
        loss_sum += value * len(logits)
        correct += (logits.argmax(1) == y[part]).sum().item()
        count += len(logits)
        if (step + 1) % per_epoch == 0 or step + 1 == total:
            if accel:  # the row reports the whole batch, not this process's slice
                sums = torch.tensor([loss_sum, correct, count], dtype=torch.float64, device=device)
                loss_sum, correct, count = accel.reduce(sums, "sum").tolist()
            scored = test is not None and (eval_epochs or (eval_last and step + 1 == total))
            rows.append({"stage": stage.name, "epoch": len(rows) + 1,
                         "train_loss": loss_sum / count, "train_acc": correct / count,
                         "test_acc": evaluate(model, test, cfg)["accuracy"] if scored else float("nan"),
                         "images_seen": seen, "wall_s": round(time.time() - t0, 3),
                         "lr": sched.get_last_lr()[0]})
            loss_sum, correct, count = 0.0, 0, 0
            model.train()
    if not all(torch.isfinite(p).all() for p in model.parameters()):  # the last step's update
        raise RuntimeError(_diverged(stage, total - 1, float("nan"), "the weights"))
    if accel:
        accel.free_memory()  # drop this stage's DDP wrapper: the next stage wraps the model anew
    return rows


def _diverged(stage: Stage, step: int, loss: float, what: str = "the loss") -> str:
    c = stage.cfg
    return (f"the {stage.name} stage diverged: {what} became {loss} at step {step + 1} "
            f"(lr={c.lr:g}, weight_decay={c.weight_decay:g}, momentum={c.momentum:g}); lower "
            f"train.{'synthetic' if stage.name == 'synthetic' else 'real'}.lr or weight_decay "
            f"(--set); nothing of this run was saved")


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator):
    """Mixup (Zhang et al. 2018): convex mixes of image pairs; returns (x, y, y_perm, lam)."""
    lam = float(np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def _forward(model, x, y, mixup_alpha: float, gen, part: slice = slice(None)):
    """Logits and loss of this process's `part` of the batch. Mixup pairs are drawn over the
    whole batch first, so that every process draws the same numbers from `gen`."""
    if mixup_alpha > 0:
        x, ya, yb, lam = mixup(x, y, mixup_alpha, gen)
        logits = model(x[part])
        return logits, (lam * F.cross_entropy(logits, ya[part])
                        + (1 - lam) * F.cross_entropy(logits, yb[part]))
    logits = model(x[part])
    return logits, F.cross_entropy(logits, y[part])


def _accelerator(cfg: Config):
    """An accelerate Accelerator when launched on 2+ processes, else None.

    mixed_precision "no": the loop autocasts itself (bf16 on CUDA, as on one process); accelerate's
    own would patch the model's forward at every stage's prepare and leave it patched.
    """
    state = process_state(cfg.device)
    if state is None:
        return None
    from accelerate import Accelerator
    return Accelerator(cpu=state.device.type == "cpu", mixed_precision="no")


class _Steps:
    """The index batches of `steps` optimizer steps (`_batch_stream` from a generator seeded
    with `seed`), drawn as they are read: a streamed stage's batch order."""

    def __init__(self, n: int, batch_size: int, steps: int, seed: int):
        self.n, self.batch_size, self.steps, self.seed = n, batch_size, steps, seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        stream = _batch_stream(self.n, self.batch_size, torch.Generator().manual_seed(self.seed))
        for _ in range(self.steps):
            yield next(stream)


def _batch_stream(n: int, batch_size: int, gen: torch.Generator):
    """Endless shuffled batches; a set smaller than a batch is repeated to fill it."""
    buffer = torch.empty(0, dtype=torch.long)
    while True:
        while len(buffer) < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=gen)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def train_run(cfg: Config, recipe: str, out, shots: int | str | None = "full", seed: int = 0,
              synthetic_dir=None, pretrained: bool = True, overwrite: bool = False,
              track_test: bool = True, save_model: bool = True) -> dict:
    """One seeded run of a recipe, written to `out`: config.json, history.csv, metrics.json and
    (unless save_model=False) the fine-tuned classifier, as plain timm reloads it
    (`models.save_classifier`: RUN_DIR/classifier in timm's `save_for_hf` layout, which
    `timm.create_model("local-dir:RUN_DIR/classifier", pretrained=True)` loads).

    metrics.json also holds LEEP on the real training images (the paper's transferability
    score): of the starting model with its pretraining head, and after the synthetic stage.
    """
    out = Path(out)
    if (out / "metrics.json").exists() and not overwrite:
        raise FileExistsError(f"run directory {str(out)!r} already holds a run; "
                              f"choose another --out or pass --overwrite")
    if not overwrite:
        _refuse_foreign_files(out)
    check_writable(out)  # the run's files are written only at the end: find a read-only out now
    if save_model:  # and a classifier folder it may not replace (--overwrite or not)
        check_classifier_folder(out / CLASSIFIER_DIR)
    check_recipe(recipe, synthetic_dir or None)
    budget_only = recipe == "vanilla" and synthetic_dir is not None and cfg.train.match_compute
    if recipe == "vanilla" and not budget_only:
        synthetic_dir = None  # vanilla never sees synthetic images
    state = process_state(cfg.device)
    # Launched on several processes: rank 0 downloads the data and writes its split files first.
    with state.main_process_first() if state is not None else contextlib.nullcontext():
        real = load_dataset(cfg, "train", shots, seed)
        test = load_dataset(cfg, "test")
    synthetic = (load_image_folder(synthetic_dir, cfg.image_size, real.class_names)
                 if synthetic_dir is not None else None)
    data_folder = Path(cfg.data_root).name if cfg.dataset == "imagefolder" else None
    warn_small_test_split(test, data_folder or cfg.dataset)  # before minutes of training
    if data_folder and synthetic is not None and not budget_only:
        warn_polarity_gap(real, synthetic, data_folder)
    source = create_classifier(cfg, None, pretrained)
    leep = {"pretrained": model_leep(source, real, cfg)}

    def leep_after_synthetic(stage: Stage, model: nn.Module) -> None:
        if stage.name == "synthetic":
            leep["after_synthetic"] = model_leep(model, real, cfg)

    t0 = time.time()
    model, history = run_recipe(cfg, recipe, real, test, synthetic, seed, pretrained,
                                track_test=track_test, after_stage=leep_after_synthetic,
                                score_last=False)
    result = evaluate(model, test, cfg)
    history.loc[history.index[-1], "test_acc"] = result["accuracy"]
    per_stage = history.groupby("stage", sort=False).agg(images_seen=("images_seen", "max"),
                                                         wall_s=("wall_s", "max"))
    metrics = {"test_acc": result["accuracy"], "per_class_accuracy": result["per_class_accuracy"],
               "recipe": recipe, "seed": seed, "shots": parse_shots(shots) or "full",
               "train_images": 0 if recipe == "synthetic-only" else len(real),
               "n_test": len(test), "n_classes": len(test.class_names),
               "pretrained": pretrained, "leep": leep, "leep_estimate": "out-of-sample halves",
               "precision": "bf16" if bf16_autocast(resolve_device(cfg.device), cfg.precision)
               else "fp32", "machine": machine_name(),
               "mixed_budget": cfg.train.mixed_budget if recipe == "mixed" else None,
               "weights": weights_source(cfg, source),
               "profile": cfg.profile, "dataset": cfg.dataset, "data_folder": data_folder,
               # a compute-matched vanilla records the set it is matched to, not as trained on
               **trained_on(synthetic_dir, len(synthetic) // len(synthetic.class_names)
                            if synthetic is not None else 0),
               "match_compute": budget_only,
               "fixed_steps": cfg.train.synthetic.steps or 0 if synthetic is not None else 0,
               **({"compute_matched_to": str(synthetic_dir), "synthetic": None,
                   "synthetic_images": 0} if budget_only else
                  {"synthetic": str(synthetic_dir) if synthetic_dir else None,
                   "synthetic_images": len(synthetic) if synthetic else 0}),
               "stages": per_stage.reset_index().to_dict("records"),
               "wall_s": round(time.time() - t0, 2)}
    if state is not None and not state.is_main_process:
        return metrics  # every process trained; one writes
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    atomic_write_bytes(out / "history.csv", history.to_csv(index=False).encode())
    if save_model:
        save_classifier(model, cfg, test.class_names, out)
    write_json(out / "metrics.json", metrics)
    return metrics


# What a killed `train` leaves (metrics.json comes last): a rerun into it is not refused. The
# classifier folder is checked by save_classifier itself, which replaces only its own files;
# the legacy names are an older run's.
_TRAIN_LEFTOVERS = ("config.json", "history.csv", LEGACY_CLASSIFIER_FILE, LEGACY_CLASSIFIER_CONFIG)


def _refuse_foreign_files(out) -> None:
    """A run folder that holds files not of a run (a config.json or history.csv of yours would
    be replaced): anything but a killed run's leftovers is refused."""
    folder = Path(out).expanduser()
    if not folder.is_dir() or (folder / "metrics.json").exists():  # train_run refuses a run
        return
    for p in sorted(folder.iterdir()):
        ours = not p.is_symlink() and (
            (p.is_file() and p.name in (*_TRAIN_LEFTOVERS, LOCK_NAME))
            or (p.is_dir() and p.name == CLASSIFIER_DIR)
            or (p.name.startswith(".") and p.name.endswith(".tmp")))  # temp files and folders
        if ours and p.name == "config.json":
            try:
                load_config(p)
            except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
                ours = False
        if not ours:
            raise FileExistsError(f"run directory {str(folder)!r} holds {p.name!r}, which is not "
                                  f"a file of a `bridge train` run; choose another --out or pass "
                                  f"--overwrite (it replaces only a run's config.json, "
                                  f"history.csv, metrics.json and classifier)")
