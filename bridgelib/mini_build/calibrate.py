"""`bridge mini calibrate`: measure the mini world's *conditions* and write data/mini-world.json.

The world is calibrated on its conditions only, never on the outcomes the paper's claims
measure (mixed vs vanilla, bridged++ vs vanilla, DSI vs template):
- headroom: vanilla on the full pool and at 4 shots (3 seeds, shipped backbone, defaults);
- how well the generator knows the target: synthetic-only (the synthetic stage alone, scored on
  the real test set) and content (the judge reads the prompted class in template images);
- the style gap: a real-vs-template domain classifier, and whether a DSI token learned with the
  default settings narrows it (Fréchet distance and domain accuracy, 95% BCa intervals over
  images by `scipy.stats.bootstrap`, 2,000 resamples, each interval's method recorded beside
  it) while keeping content: DSI images read by the judge at >= 95% of what it reads on real
  test images of the same classes (the judge's own ceiling; the template images, drawn in the
  web's looks, can read above it, so the template - DSI difference is no measure of a cost);
- what pretraining is worth here: pretrained - scratch vanilla at the full pool and 4 shots
  (recorded, never tuned: the paper's ImageNet prior is worth far more on its datasets);
- the test set's size.
Runs, sets and the token are cached under `cache/` and reused, so a killed calibration resumes.

No notebook teaches it: README's "The mini world, and how it was built"; notebook 01 shows the
conditions it measured.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bridgelib.config import DATA_DIR, REPO_ROOT, get_config
from bridgelib.files import write_json
from bridgelib.folders import load_image_folder
from bridgelib.generate import cached_synthetic_set
from bridgelib.invert import cached_style_token
from bridgelib.metrics import (BOOTSTRAP_RESAMPLES, backbone_features, bootstrap_interval,
                               domain_correct, frechet_difference_interval, frechet_distance,
                               recognisability)
from bridgelib.mini.fashion import CLASSES as MINI_CLASSES, load_mini_part
from bridgelib.pipeline import load_pipeline
from bridgelib.transfer import train_run

WORLD_FILE = DATA_DIR / "mini-world.json"
SEEDS = (0, 1, 2)
SET_PER_CLASS = 200     # template images per class: the results store's default per_class
BOOTSTRAP = BOOTSTRAP_RESAMPLES  # BCa resamples (over images) for the style-gap intervals
DOMAIN_COMMAND = ("{gen}; bridge mini calibrate (metrics.domain_correct: real test images vs SYN, "
                  "logistic regression on backbone features, 5-fold cross-validated, one fit per seed)")
BANDS = {"vanilla_full": (0.75, 0.92), "vanilla_4shot": (0.20, 0.75),
         "synthetic_only": (0.15, 0.70), "content": (0.70, 1.0), "domain_accuracy": (0.90, 1.0)}


def _train(cfg, recipe: str, shots, seed: int, synthetic=None, root: Path = None,
           pretrained: bool = True) -> float:
    out = root / f"{recipe}-{shots}-s{seed}{'' if pretrained else '-scratch'}"
    if not (out / "metrics.json").exists():
        train_run(cfg, recipe, out, shots=shots, seed=seed, synthetic_dir=synthetic,
                  track_test=False, pretrained=pretrained)
    return json.loads((out / "metrics.json").read_text())["test_acc"]


def _figure(values: list[float], command: str) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values, ddof=1)), 4)
            if len(values) > 1 else 0.0, "n": len(values), "values": [round(v, 4) for v in values],
            "command": command}


def gap_intervals(real: np.ndarray, template: np.ndarray, dsi: np.ndarray,
                  template_correct: np.ndarray, dsi_correct: np.ndarray) -> dict[str, dict]:
    """95% BCa intervals (scipy.stats.bootstrap, BOOTSTRAP resamples) of template - DSI for the
    two gap measures, each with the record of how it was made. Fréchet distance: the real,
    template and DSI images resampled each on its own, one real resample serving both distances
    (as the interval always did: the two sets are different prompts' images, not pairs).
    Domain accuracy: the held-out correctness of each image of the two cross-validations,
    resampled each on its own."""
    fd = frechet_difference_interval(template, dsi, real, paired=False, n_resamples=BOOTSTRAP,
                                     seed=0)
    acc = bootstrap_interval(lambda a, b, axis: a.mean(axis) - b.mean(axis),
                             (template_correct.astype(float), dsi_correct.astype(float)),
                             vectorized=True, n_resamples=BOOTSTRAP, seed=1)
    fd["resampled"] = "real, template and DSI images, each on its own"
    acc["resampled"] = "the images of each cross-validation (real and synthetic), each on its own"
    return {"frechet": fd, "domain_accuracy": acc}


def _interval(record: dict) -> tuple[list[float], dict]:
    """[low, high] rounded, and the method record without them (for mini-world.json)."""
    return ([round(record["low"], 4), round(record["high"], 4)],
            {k: v for k, v in record.items() if k not in ("low", "high")})


def calibrate(out: str | Path = WORLD_FILE, cache: str | Path | None = None) -> dict:
    """Measure every condition (about 8 minutes on 2 CPU cores) and write `out`."""
    t0 = time.time()
    cfg = get_config("mini")
    cache = Path(cache) if cache else REPO_ROOT / "cache"
    runs = cache / "calibration"
    train = "bridge train --profile mini --recipe {r} --shots {k} --seed S --out DIR"
    world = {"n_test": len(load_mini_part("test")), "n_pool": len(load_mini_part("pool")),
             "n_classes": len(MINI_CLASSES), "seeds": list(SEEDS), "bands": BANDS,
             "dataset": cfg.dataset, "backbone": cfg.backbone}
    world["vanilla_full"] = _figure([_train(cfg, "vanilla", "full", s, root=runs) for s in SEEDS],
                                    train.format(r="vanilla", k="full"))
    world["vanilla_4shot"] = _figure([_train(cfg, "vanilla", 4, s, root=runs) for s in SEEDS],
                                     train.format(r="vanilla", k=4))
    world["pretraining_worth_points"] = {
        str(k): _figure([100 * (_train(cfg, "vanilla", k, s, root=runs)
                                - _train(cfg, "vanilla", k, s, root=runs, pretrained=False))
                         for s in SEEDS], f"{train.format(r='vanilla', k=k)}, minus the same "
                                          f"with --scratch, per seed")
        for k in ("full", 4)}
    pipe = load_pipeline(cfg)
    template = cached_synthetic_set(cfg, SET_PER_CLASS, "single", pipe=pipe,
                                    root=cache / "synthetic")
    gen = f"bridge generate --profile mini --per-class {SET_PER_CLASS} --out SYN"
    world["synthetic_only"] = _figure(
        [_train(cfg, "synthetic-only", "full", s, template, runs) for s in SEEDS],
        f"{gen}; bridge train --profile mini --recipe synthetic-only --synthetic SYN --seed S --out DIR")
    token = cached_style_token(cfg, seed=0, pipe=pipe, root=cache / "dsi")
    dsi = cached_synthetic_set(cfg, SET_PER_CLASS, "dsi", token, pipe=pipe,
                               root=cache / "synthetic")
    world.update(_style_gap(cfg, template, dsi, gen))
    world["dsi"]["token"] = (str(Path(token).relative_to(cache.parent))
                             if cache.parent in Path(token).parents else str(token))
    world["synthetic_only_below_vanilla_full_points"] = round(
        100 * (world["vanilla_full"]["mean"] - world["synthetic_only"]["mean"]), 2)
    world["within_bands"] = _conditions(world)
    world["command"] = "bridge mini calibrate"
    world["seconds"] = round(time.time() - t0, 1)
    write_json(out, world)
    return world


def _style_gap(cfg, template: Path, dsi: Path, gen: str) -> dict:
    """Content (the judge), the real-vs-template domain accuracy, and what DSI does to both
    gap measures, on the shipped backbone's features of as many real test images as synthetic."""
    sets = {"template": load_image_folder(template, cfg.image_size, list(MINI_CLASSES)),
            "dsi": load_image_folder(dsi, cfg.image_size, list(MINI_CLASSES))}
    test = load_mini_part("test")
    ceiling = recognisability(test.images, test.labels)
    content = {k: recognisability(s.images, s.labels) for k, s in sets.items()}
    real = test.subset(np.random.default_rng(0).permutation(len(test))[:len(sets["template"])])
    feats = {"real": backbone_features(real.images, cfg),
             **{k: backbone_features(s.images, cfg) for k, s in sets.items()}}
    # Held-out correctness of each image (real and synthetic) under 5-fold CV, one fit per seed.
    correct = {k: [np.concatenate(domain_correct(feats["real"], feats[k], seed=s)) for s in SEEDS]
               for k in sets}
    accs = {k: [float(c.mean()) for c in v] for k, v in correct.items()}
    fd = {k: frechet_distance(feats["real"], feats[k]) for k in sets}
    ci = gap_intervals(feats["real"], feats["template"], feats["dsi"], correct["template"][0],
                       correct["dsi"][0])
    fd_ci, fd_method = _interval(ci["frechet"])
    acc_ci, acc_method = _interval(ci["domain_accuracy"])
    return {
        "judge_on_real_test": round(ceiling, 4),
        "content": {**_figure([content["template"]], f"{gen}; judge (data/mini-judge) on SYN"),
                    "over_ceiling": round(content["template"] / ceiling, 4)},
        "domain_accuracy": _figure(accs["template"], DOMAIN_COMMAND.format(gen=gen)),
        "dsi": {
            "command": f"bridge invert --profile mini --out TOKEN; bridge generate --profile mini "
                       f"--per-class {SET_PER_CLASS} --template dsi --style-token TOKEN --out DSI",
            "frechet": {"template": round(fd["template"], 2), "dsi": round(fd["dsi"], 2),
                        "template_minus_dsi_ci95": fd_ci, "ci95_method": fd_method},
            "domain_accuracy": {"template": round(float(np.mean(accs["template"])), 4),
                                "dsi": round(float(np.mean(accs["dsi"])), 4),
                                "template_minus_dsi_ci95": acc_ci, "ci95_method": acc_method},
            "content": {"template": round(content["template"], 4), "dsi": round(content["dsi"], 4),
                        "cost_points": round(100 * (content["template"] - content["dsi"]), 2),
                        "dsi_over_ceiling": round(content["dsi"] / ceiling, 4)}}}


def _conditions(world: dict) -> dict[str, bool]:
    """Whether each condition of the world holds (the bands, and the rules beside them)."""
    d = world["dsi"]
    return {
        **{k: bool(lo <= world[k]["mean"] <= hi) for k, (lo, hi) in BANDS.items()},
        "synthetic_only_15_points_below_vanilla_full": world["synthetic_only_below_vanilla_full_points"] >= 15,
        "dsi_lowers_frechet": d["frechet"]["template_minus_dsi_ci95"][0] > 0,
        "dsi_lowers_domain_accuracy": d["domain_accuracy"]["template_minus_dsi_ci95"][0] > 0,
        "dsi_content_at_least_95pct_of_the_judge_on_real": d["content"]["dsi_over_ceiling"] >= 0.95,
        "n_test_at_least_3000": world["n_test"] >= 3000}
