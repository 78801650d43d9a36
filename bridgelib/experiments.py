"""Grids of training runs: run what is missing, skip what is on disk, collect one tidy table.

A cell of the grid is one `train_run` written to `root/<recipe>-k<shots>-s<seed>[-scratch]/`;
a cell whose metrics.json exists is never recomputed, so an interrupted grid resumes.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd

from bridgelib.config import Config
from bridgelib.files import progress
from bridgelib.transfer import train_run


def run_name(recipe: str, shots, seed: int, pretrained: bool = True, tag: str = "") -> str:
    return f"{recipe}-k{shots}-s{seed}" + ("" if pretrained else "-scratch") + (f"-{tag}" if tag else "")


def run_grid(cfg: Config, root: str | Path, recipes=("vanilla",), shots=(4,), seeds=(0,),
             pretrained=(True,), synthetic_dir=None, tag: str = "") -> pd.DataFrame:
    """Run every (recipe, shots, seed, pretrained) cell not already on disk; return all runs."""
    root = Path(root)
    cells = list(itertools.product(recipes, shots, seeds, pretrained))
    for recipe, k, seed, pre in progress(cells, desc="runs"):
        out = root / run_name(recipe, k, seed, pre, tag)
        if (out / "metrics.json").exists():
            continue
        train_run(cfg, recipe, out, shots=k, seed=seed, pretrained=pre,
                  synthetic_dir=None if recipe == "vanilla" else synthetic_dir)
    return collect_runs(root)


def collect_runs(*roots: str | Path) -> pd.DataFrame:
    """One row per run found under `roots` (its metrics.json), per-class accuracies left out."""
    rows = []
    for root in roots:
        for path in sorted(Path(root).glob("*/metrics.json")):
            m = json.loads(path.read_text())
            m.pop("per_class_accuracy", None)
            m.pop("stages", None)
            leep = m.pop("leep", None) or {}
            rows.append({"run": path.parent.name, **m,
                         **{f"leep_{k}": v for k, v in leep.items()}})
    return pd.DataFrame(rows)


def load_histories(*roots: str | Path) -> dict[str, pd.DataFrame]:
    """{run name: its history.csv} for every run under `roots` (for convergence plots)."""
    return {p.parent.name: pd.read_csv(p) for root in roots for p in sorted(Path(root).glob("*/history.csv"))}


def summarize(runs: pd.DataFrame, by=("recipe", "shots")) -> pd.DataFrame:
    """Mean, std and count of test accuracy per group (seeds aggregated)."""
    by = [b for b in by if b in runs.columns]
    return (runs.groupby(by, sort=False)["test_acc"].agg(["mean", "std", "count"])
            .reset_index())
