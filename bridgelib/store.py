"""The results store: one row per training run, and the table algebra figures and claims share.

A sweep (`bridgelib.experiments`) writes `root/results.csv`, one row per run: the config columns
(`recipe`, `shots`, `seed`, `per_class` = synthetic images per class, `guidance`, `template`
("single" | "dsi"), `gen_seed`, `fixed_steps`, `match_compute`, `scratch`, `profile`,
`dataset`), then the metrics (`test_acc`, LEEP, image counts, `syn_per_real`, `wall_s`), then
the synthetic set's folder name (STORE_COLUMNS). `pd.read_csv` reads it as is; `read_store`
also types `shots` as int | "full" and reads a store or run folders written under older
names (OLD_NAMES). The shipped store (data/results/store, built by
tools/build_results_store.py) adds `histories.csv`, every run's per-epoch test accuracy
(`read_histories`), and `store.json`, how it was built (`describe_store`).

Every number a figure or table shows comes from `aggregate` (mean, std and count of test
accuracy over seeds), and a table holds every study column it does not show at one value
(`hold_fixed`), so nothing silently averages over a dimension it does not show.
`bridgelib.report` draws it and `bridgelib.claims` tests the paper's claims on it.

Taught in notebooks 01, 03, 04, 05, 06.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bridgelib.files import atomic_write_bytes, read_json

STORE_FILE = "results.csv"
HISTORY_FILE = "histories.csv"
META_FILE = "store.json"  # written by tools/build_results_store.py, read by describe_store
CONFIG_COLUMNS = ("run", "recipe", "shots", "seed", "per_class", "guidance", "template",
                  "gen_seed", "fixed_steps", "match_compute", "mixed_budget", "scratch",
                  "precision", "profile", "dataset")
METRIC_COLUMNS = ("test_acc", "leep_pretrained", "leep_after_synthetic", "leep_estimate",
                  "train_images", "synthetic_images", "syn_per_real", "token_real_per_class",
                  "wall_s", "machine")
STORE_COLUMNS = CONFIG_COLUMNS + METRIC_COLUMNS + ("synthetic",)
RECIPE_ORDER = ("vanilla", "mixed", "bridged", "bridged-reinit", "bridged++")  # transfer.RECIPES
TEMPLATE_ORDER = ("none", "single", "multi", "dsi")  # "none": real-only runs (vanilla)
STUDY_COLUMNS = ("dataset", "precision", "shots", "template", "guidance", "per_class",
                 "gen_seed", "fixed_steps", "match_compute", "mixed_budget", "scratch")
# Old name -> today's, for stores and run folders written before issue 26 gave each quantity one
# name (results.csv's column, metrics.json's key): read_store and collect_runs apply it, so they
# load as they are on disk (the shipped store among them) and are never rewritten for it.
OLD_NAMES = {"volume": "per_class", "synthetic_per_class": "per_class"}


# ---------------------------------------------------------------- the results store
def write_store(root: str | Path) -> pd.DataFrame:
    """Rewrite `root/results.csv` atomically from every run in `root`; return it."""
    store = tidy_runs(collect_runs(root))
    atomic_write_bytes(Path(root) / STORE_FILE, store.to_csv(index=False).encode())
    return store


def read_store(path: str | Path) -> pd.DataFrame:
    """A results store (a folder holding results.csv, or the CSV), shots as int | "full"."""
    path = Path(path)
    csv = path / STORE_FILE if path.is_dir() else path
    if not csv.exists():
        raise FileNotFoundError(f"no results store {str(csv)!r}; build one with `bridge sweep` "
                                f"or tools/build_results_store.py")
    store = fill_recorded(pd.read_csv(csv, dtype={"shots": str}).rename(columns=OLD_NAMES))
    store["shots"] = store["shots"].map(lambda k: "full" if k == "full" else int(k)).astype(object)
    if "per_class" in store:
        store["per_class"] = store["per_class"].astype("Int64")
    return store


@dataclass(frozen=True)
class StoreInfo:
    """How a results store was built: what its readers (notebooks 01, 03, 05, 06, README's
    claims table) say about it before showing its numbers.

    profile, dataset: the world its runs were trained in; runs: how many rows results.csv holds;
    grid: the build's grid ("full", "quick"; None for a `bridge sweep` folder); provisional: the
    grid is not complete (or is a small stand-in); missing_runs: the grid's runs not in it;
    seeds: the training seeds of the grid; built: when; generator, generator_fingerprint: the
    generator folder and its weights' fingerprint (`pipeline.model_fingerprint`), None when
    unrecorded; commands: the `bridge sweep` commands that made it, [{"family", "command"}]."""
    profile: str
    dataset: str
    runs: int
    grid: str | None = None
    provisional: bool = False
    missing_runs: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    built: str | None = None
    generator: str | None = None
    generator_fingerprint: str | None = None
    commands: tuple[dict, ...] = ()

    def summary(self) -> str:
        """One line: runs, world, seeds, grid, when built."""
        grid = f", grid {self.grid!r}" if self.grid else ""
        seeds = f", seeds {list(self.seeds)}" if self.seeds else ""
        built = f", built {self.built}" if self.built else ""
        return f"{self.runs} runs ({self.profile}, {self.dataset}){seeds}{grid}{built}"


def describe_store(folder: str | Path) -> StoreInfo:
    """How the results store in `folder` was built (its store.json). Keys a store.json of an
    older build lacks take StoreInfo's defaults; a folder without store.json (a `bridge sweep`
    folder) is described from its runs: their profile and dataset, no grid."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.exists():
        runs = read_store(folder)  # its own one-line error when there is no store either
        def only(col: str) -> str:
            values = sorted(map(str, runs[col].dropna().unique())) if col in runs else []
            return ", ".join(values) or "unrecorded"
        return StoreInfo(profile=only("profile"), dataset=only("dataset"), runs=len(runs))
    meta = read_json(meta_path, META_FILE)
    missing = [k for k in ("profile", "dataset", "runs") if k not in meta]
    if missing:
        raise ValueError(f"{str(meta_path)!r} lacks {missing}; rebuild it with "
                         f"tools/build_results_store.py")
    return StoreInfo(profile=meta["profile"], dataset=meta["dataset"], runs=int(meta["runs"]),
                     grid=meta.get("grid"), provisional=bool(meta.get("provisional", False)),
                     missing_runs=tuple(meta.get("missing_runs", ())),
                     seeds=tuple(meta.get("seeds", ())), built=meta.get("built"),
                     generator=meta.get("generator"),
                     generator_fingerprint=meta.get("generator_fingerprint"),
                     commands=tuple(meta.get("commands", ())))


def read_histories(folder: str | Path) -> pd.DataFrame:
    """Per-epoch histories of the runs in `folder` (columns run, stage, epoch, ..., test_acc):
    a shipped store's histories.csv, else every run folder's history.csv (`bridge sweep`)."""
    path = Path(folder) / HISTORY_FILE
    if path.exists():
        return pd.read_csv(path)
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"no results store folder {str(folder)!r}")
    return collect_histories(folder)


def fill_recorded(df: pd.DataFrame) -> pd.DataFrame:
    """What runs made before a column was recorded did: precision "auto" (bf16 on a CPU with
    AMX, else fp32: not recorded), mixed's budget "bridged" (its only one then), LEEP in sample
    (the paper's estimate, the only one then)."""
    if df.empty or "recipe" not in df:
        return df
    df = df.copy()
    df["precision"] = df["precision"].fillna("auto") if "precision" in df else "auto"
    mixed = df["recipe"] == "mixed"
    budget = df["mixed_budget"] if "mixed_budget" in df else pd.Series(None, index=df.index,
                                                                        dtype=object)
    df["mixed_budget"] = budget.astype(object).where(~mixed | budget.notna(), "bridged")
    if "leep_pretrained" in df:
        estimate = df["leep_estimate"] if "leep_estimate" in df else pd.Series(
            None, index=df.index, dtype=object)
        df["leep_estimate"] = estimate.astype(object).where(
            estimate.notna() | df["leep_pretrained"].isna(), "in-sample")
    return df


def load_runs(*folders: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(store, histories) of folders of runs (run directories) or of shipped stores
    (results.csv and histories.csv, as tools/build_results_store.py writes them). A run name
    found in two folders is prefixed with its folder's name, so runs stay apart."""
    parts = []  # (folder name, store, histories or None)
    for folder in map(Path, folders):
        if any(folder.glob("*/metrics.json")):
            parts.append((folder.name, tidy_runs(collect_runs(folder)), collect_histories(folder)))
        elif (folder / STORE_FILE).exists():
            has_histories = (folder / HISTORY_FILE).exists()
            parts.append((folder.name, read_store(folder),
                          read_histories(folder) if has_histories else None))
    if not parts:
        raise FileNotFoundError(f"no runs (*/metrics.json) or {STORE_FILE} under "
                                f"{', '.join(map(str, folders))}")
    names = [n for _, st, _ in parts for n in st["run"]]
    if len(names) != len(set(names)):
        parts = [(tag, st.assign(run=tag + "/" + st["run"]),
                  None if h is None else h.assign(run=tag + "/" + h["run"]))
                 for tag, st, h in parts]
    histories = [h for _, _, h in parts if h is not None]
    return (pd.concat([st for _, st, _ in parts], ignore_index=True),
            pd.concat(histories, ignore_index=True) if histories else None)


def tidy_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """`collect_runs` rows as store rows: per_class (NaN without synthetic data), scratch, the
    synthetic folder's name; config columns first, then metrics, then anything else."""
    if raw.empty:
        return pd.DataFrame(columns=list(STORE_COLUMNS))
    df = raw.copy()
    per_class = pd.to_numeric(df["per_class"], errors="coerce") \
        if "per_class" in df else pd.Series(float("nan"), index=df.index)
    df["per_class"] = per_class.where(per_class > 0).astype("Int64")
    df["scratch"] = ~df.pop("pretrained").astype(bool) if "pretrained" in df else False
    # Runs made before these were recorded: one generation seed (0), epoch budgets, no matching.
    synthetic = df["per_class"].notna()
    for col, default in (("gen_seed", 0), ("fixed_steps", 0), ("match_compute", False)):
        df[col] = df[col].fillna(default) if col in df else default
    df["gen_seed"] = pd.to_numeric(df["gen_seed"]).where(synthetic).astype("Int64")
    df["fixed_steps"] = df["fixed_steps"].astype(int)
    df["match_compute"] = df["match_compute"].astype(bool)
    train = pd.to_numeric(df["train_images"])
    df["syn_per_real"] = (pd.to_numeric(df["synthetic_images"]) / train.where(train > 0)).round(3)
    df["synthetic"] = df.get("synthetic", pd.Series(None, index=df.index, dtype=object)).map(
        lambda p: Path(p).name if isinstance(p, str) and p else None)
    df = fill_recorded(df)
    first = [c for c in STORE_COLUMNS if c in df]
    return df[first + [c for c in df if c not in first]]


def collect_runs(*roots: str | Path) -> pd.DataFrame:
    """One row per run found under `roots` (its metrics.json), per-class accuracies left out."""
    rows = []
    for root in roots:
        for path in sorted(Path(root).glob("*/metrics.json")):
            m = read_json(path, "metrics.json")  # a regular file holding a JSON object
            m.pop("per_class_accuracy", None)
            m.pop("stages", None)
            leep = m.pop("leep", None) or {}
            m = {OLD_NAMES.get(k, k): v for k, v in m.items()}
            rows.append({"run": path.parent.name, **m,
                         **{f"leep_{k}": v for k, v in leep.items()}})
    return pd.DataFrame(rows)


def collect_histories(*roots: str | Path, runs=None) -> pd.DataFrame:
    """Every run's history.csv in one tidy table with a `run` column (optionally only `runs`)."""
    parts = [pd.read_csv(p).assign(run=p.parent.name) for root in roots
             for p in sorted(Path(root).glob("*/history.csv"))
             if runs is None or p.parent.name in set(runs)]
    if not parts:
        return pd.DataFrame(columns=["run", "stage", "epoch", "test_acc"])
    table = pd.concat(parts, ignore_index=True)
    return table[["run", *[c for c in table if c != "run"]]]


def summarize(runs: pd.DataFrame, by=("recipe", "shots")) -> pd.DataFrame:
    """Mean, std and count of test accuracy per group (seeds aggregated)."""
    by = [b for b in by if b in runs.columns]
    return (runs.groupby(by, sort=False)["test_acc"].agg(["mean", "std", "count"])
            .reset_index())


# ---------------------------------------------------------------- aggregation and ordering
def shot_label(value) -> int | str:
    """4, 4.0, "4" -> 4; None, NaN, "full" -> "full" (the whole training pool)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "full" if missing or value == "full" else int(value)


def study_values(runs: pd.DataFrame, col: str) -> pd.Series:
    """A study column made comparable: shots as int | "full"; a per_class or guidance of 0 or
    less (vanilla's 0 synthetic images per class) counts as missing, like NaN."""
    if col == "shots":
        return runs[col].map(shot_label).astype(object)
    if col in ("per_class", "guidance"):
        return pd.to_numeric(runs[col], errors="coerce").astype(float).where(lambda v: v > 0)
    return runs[col]


def paper_order(col: pd.Series) -> pd.Series:
    """Recipes in the paper's order, shots 1 < 2 < ... < "full", templates none < single < dsi."""
    order = {"recipe": RECIPE_ORDER, "template": TEMPLATE_ORDER}.get(col.name)
    if order:  # known values in that order, unknown ones after them alphabetically
        return col.map(lambda v: f"{order.index(v) if v in order else len(order):02d}{v}")
    if col.name == "shots":
        return col.map(lambda v: math.inf if v == "full" else float(v))
    return col


def aggregate(runs: pd.DataFrame, by) -> pd.DataFrame:
    """Mean, std and count of `test_acc` per group of `by`, sorted in the paper's order.

    The single place results are aggregated (through `summarize`); `shots` is
    normalised to int | "full" first, rows whose group key is missing are left out.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, "test_acc"] if c not in runs.columns]
    if missing:
        raise KeyError(f"runs lack column(s) {missing}; they have {list(runs.columns)}")
    if "shots" in by:
        runs = runs.assign(shots=study_values(runs, "shots"))
    table = summarize(runs[[*by, "test_acc"]], by)
    return table.sort_values(by, key=paper_order, ignore_index=True)


def hold_fixed(runs: pd.DataFrame, keep, rows=None) -> tuple[pd.DataFrame, dict]:
    """Hold every study column not in `keep` at one value, so a figure never silently averages
    over a dimension it does not show. The value chosen is the one under which the most
    (recipe, *keep) combinations were run, then the most runs, among `rows` (a boolean mask,
    default all); rows where the column is empty (vanilla has no guidance) stay. Returns the
    rows kept and {"at_<column>": value} for each column held, which tables add as columns."""
    keep = list(dict.fromkeys(keep))
    cols = [runs[c] for c in dict.fromkeys(["recipe", *keep])]
    combo = pd.Series([str(t) for t in zip(*cols)], index=runs.index, dtype=object)
    rows = pd.Series(True, index=runs.index) if rows is None else rows
    fixed = {}
    for col in STUDY_COLUMNS:
        if col in keep or col not in runs.columns:
            continue
        values = study_values(runs, col)
        candidates = values[rows].value_counts().index
        if values.dropna().nunique() < 2 or candidates.empty:
            continue
        fixed[col] = max(candidates, key=lambda v: (combo[rows & (values == v)].nunique(),
                                                    int((rows & (values == v)).sum())))
        mask = values.isna() | (values == fixed[col])
        runs, rows, combo = runs[mask], rows[mask], combo[mask]
    return runs, {f"at_{k}": v for k, v in fixed.items()}


# ---------------------------------------------------------------- tables behind the figures
def _recipes(runs: pd.DataFrame, recipes) -> pd.DataFrame:
    return runs if recipes is None else runs[runs["recipe"].isin(recipes)]


def curve_table(runs: pd.DataFrame, x: str, recipes=None) -> pd.DataFrame:
    """Per (recipe, x) accuracy; recipes with no `x` at all (vanilla) get one row, x = NaN."""
    runs = _recipes(runs, recipes)
    xs = study_values(runs, x)
    runs, at = hold_fixed(runs.assign(**{x: xs}), (x,), rows=xs.notna())
    xs = runs[x]
    on = aggregate(runs[xs.notna()], ["recipe", x])
    off = aggregate(runs[xs.isna() & ~runs["recipe"].isin(on["recipe"])], ["recipe"])
    both = pd.concat([on, off.assign(**{x: np.nan})], ignore_index=True)
    return both.sort_values(["recipe", x], key=paper_order, ignore_index=True).assign(**at)


def shots_table(runs: pd.DataFrame, recipes=None, scratch: bool = False) -> pd.DataFrame:
    """Per (recipe, shots) accuracy, shots ordered 1, 2, 4, 8, 16, "full"; scratch=True: per
    (recipe, scratch, shots), pretrained and from-scratch runs apart (else held at one)."""
    keep = ("shots", "scratch") if scratch else ("shots",)
    runs, at = hold_fixed(_recipes(runs, recipes), keep)
    return aggregate(runs, ["recipe", *keep[1:], "shots"]).assign(**at)


def radar_table(runs: pd.DataFrame, by: str = "shots", baseline: str = "vanilla") -> pd.DataFrame:
    """Per (recipe, `by`) accuracy and `relative` = recipe mean / baseline mean on that axis."""
    runs, at = hold_fixed(runs, (by,))
    table = aggregate(runs, ["recipe", by]).assign(**at)
    base = table[table["recipe"] == baseline].set_index(by)["mean"]
    if base.empty:
        raise ValueError(f"baseline recipe {baseline!r} has no runs; recipes: {set(table.recipe)}")
    table = table[table[by].isin(base.index)].reset_index(drop=True)
    return table.assign(relative=table["mean"] / table[by].map(base).astype(float))


def histories_by_recipe(histories: pd.DataFrame, runs: pd.DataFrame, recipes=None,
                        **where) -> tuple[dict[str, pd.DataFrame], dict]:
    """{recipe: the history rows of its runs (seeds pooled)} from a tidy history table (a `run`
    column, as `collect_histories` writes) and the store; `where` fixes study
    columns (e.g. shots=4), the others are held like a figure's (`hold_fixed`). Also returns
    {"at_<column>": value} of the slice."""
    runs = _recipes(runs, recipes)
    runs = runs[runs["run"].isin(set(histories["run"]))]
    for col, value in where.items():
        runs = runs[study_values(runs, col) == (shot_label(value) if col == "shots" else value)]
    runs, at = hold_fixed(runs, ("recipe",))
    at.update({f"at_{k}": v for k, v in where.items()})
    for col in ("shots", "per_class", "guidance", "template"):  # say the slice even when it is
        values = study_values(runs, col).dropna().unique() if col in runs else ()  # all there is
        if f"at_{col}" not in at and len(values) == 1:
            at[f"at_{col}"] = values[0]
    recipe_of = runs.drop_duplicates("run").set_index("run")["recipe"]
    rows = histories[histories["run"].isin(recipe_of.index)]
    present = set(recipe_of)
    order = [r for r in RECIPE_ORDER if r in present] + sorted(present - set(RECIPE_ORDER))
    return {r: rows[rows["run"].map(recipe_of) == r] for r in order}, at


def convergence_table(histories, stage: str = "real", runs: pd.DataFrame | None = None,
                      **where) -> pd.DataFrame:
    """Per (label, epoch) test accuracy of one stage (several seeds of a label are averaged).

    `histories`: {label: history} or, with `runs` (the store), a tidy history table whose runs
    are grouped per recipe (`histories_by_recipe`)."""
    at = {}
    if runs is not None:
        histories, at = histories_by_recipe(histories, runs, **where)
    parts = [aggregate(h[h["stage"] == stage], "epoch").dropna(subset=["mean"]).assign(label=lab)
             for lab, h in histories.items()]
    parts = [p for p in parts if len(p)]  # a history without this stage draws no line
    if not parts:
        raise ValueError(f"no history has test accuracy in stage {stage!r}")
    table = pd.concat(parts, ignore_index=True)[["label", "epoch", "mean", "std", "count"]]
    return table.assign(**at)


def template_vs_dsi_table(runs: pd.DataFrame, recipes=None) -> pd.DataFrame:
    """Mean ± std per (template, recipe, shots); real-only runs appear as template "none".
    Default recipes: those run with a DSI set, and vanilla as the reference."""
    runs = runs.assign(template=runs["template"].astype(object).fillna("none"))
    if recipes is None and (runs["template"] == "dsi").any():
        recipes = {"vanilla", *runs.loc[runs["template"] == "dsi", "recipe"]}
    runs, at = hold_fixed(_recipes(runs, recipes), ("template", "shots"))
    table = aggregate(runs, ["template", "recipe", "shots"]).assign(**at)
    table["mean ± std"] = [f"{m:.3f} ± {s:.3f}" if s == s else f"{m:.3f} (one run)"
                           for m, s in zip(table["mean"], table["std"])]
    return table
