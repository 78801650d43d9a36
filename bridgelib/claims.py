"""The paper's claims, each tested in the paper's own setting as a paired comparison.

One table, `RULES`, holds every claim: the paper's sentence and its source (docs/paper.md), the
setting it is tested in, the two sets of runs compared (a − b) and the direction the paper
reports. A comparison pairs runs that share the real subset and the training seed (and the
generation seed, where both sides have one), and reports the mean paired difference with a 95%
t interval and n, in points and in test images. The verdict follows from the interval alone:

- `reproduced`: the interval excludes 0 on the paper's side;
- `opposite`: it excludes 0 on the other side;
- `within noise`: it contains 0, or the difference is under 2 test images;
- `not measured`: fewer than 2 pairs in the store.

A claim that something does *not* matter (the guidance scale) is an equivalence: `reproduced`
if the whole interval lies within ±EQUIVALENCE_POINTS, `opposite` if it lies wholly outside,
`within noise` otherwise.

The store's world (the mini Fashion-MNIST target, a tiny generator) is not the paper's, so a
verdict says whether the paper's *direction* shows up here, with this much evidence.

Taught in notebooks 03, 05, 06.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from bridgelib.mini.fashion import POOL_PER_CLASS  # the store's world: the mini pool
from bridgelib.store import paper_order

VERDICTS = ("reproduced", "opposite", "within noise", "not measured")
COLUMNS = ["claim", "setting", "diff", "ci_low", "ci_high", "n", "diff_images", "unit",
           "verdict", "paper_diff", "paper", "source"]
EARLY_EPOCHS = 3            # "converges faster": mean test accuracy over the first real epochs
NOISE_IMAGES = 2            # a difference under 2 test images is noise, whatever the interval
MONITOR_IMAGES = 2000       # per-epoch accuracy is read on this many (config.monitor_images)
EQUIVALENCE_POINTS = 2.0    # "robust to guidance": every value within ±2 points of another
LEVEL = 0.95
MIX_RATIOS = (1, 4, 15, 24)  # synthetic per real: 50%, 20%, 6.25% and 4% real (the paper's 15-24)
DEFAULT_VOLUME = 200        # the store's default synthetic images per class
FIXED_BUDGET = 125          # the volume family's synthetic-stage steps (DEFAULT_VOLUME's epochs)

# What a run of the store is unless a rule says otherwise: pretrained, its recipe's own budget,
# not compute-matched. Synthetic recipes also: the default volume, the single template, the
# profile's guidance and the first generation seed.
BASE = {"scratch": False, "match_compute": False, "fixed_steps": 0}
SYNTHETIC = {"volume": DEFAULT_VOLUME, "template": "single", "guidance": 3.0, "gen_seed": 0}


@dataclass(frozen=True)
class Rule:
    claim: str
    setting: str
    a: dict                   # the runs of the paper's method (column: value)
    b: dict                   # the runs it is compared with
    direction: int            # the paper's sign of a − b; 0: "no difference" (equivalence)
    paper: str                # what the paper says, with its numbers
    source: str               # where that comes from (docs/paper.md names each kind)
    paper_diff: str           # the paper's a − b in a few characters, for the forest plot
    pair_on: tuple = ("seed",)
    metric: str = "test_acc"  # test_acc | early_acc (histories) | leep (after − before, per run)
    cols: tuple = field(default=())  # a different column per side (the LEEP rule)


def _runs(recipe: str, shots, **where) -> dict:
    synthetic = {} if recipe == "vanilla" else SYNTHETIC
    return {**BASE, **synthetic, "recipe": recipe, "shots": shots, **where}


def _matched(shots, volume=DEFAULT_VOLUME) -> dict:
    return {**BASE, "recipe": "vanilla", "shots": shots, "volume": volume, "match_compute": True}


REVIEW = "the paper, as quoted by a review"
REVIEWS = "the paper, as quoted by reviews and summaries"
SHOT_SETTINGS = (("full", "full pool"), (4, "4 shots"))


def _rules() -> list[Rule]:
    rules = []
    mixed = "mixed is 6–10 points below vanilla on all ten datasets (full data, ~15–24 synthetic per real)"
    for ratio in (15, 24):
        volume = POOL_PER_CLASS * ratio
        for b, vs in ((_runs("vanilla", "full"), "vanilla"), (_matched("full", volume),
                                                               "compute-matched vanilla")):
            rules.append(Rule("Mixed transfer is below vanilla", f"full pool, {ratio} : 1, vs {vs}",
                              _runs("mixed", "full", volume=volume), b, -1, mixed, REVIEW,
                              "−6 to −10"))
    order = "bridged < bridged + head reset < bridged++ (the recipes' order)"
    recipes = [("Bridged++ beats vanilla", "bridged++", "vanilla", +1,
                "bridged++ above vanilla on all ten, e.g. Aircraft 79.7 → 85.2, Cars 83.8 → 91.6",
                "the paper's table, as quoted by a review", "+5.5, +7.8"),
               ("Plain bridged is below vanilla somewhere", "bridged", "vanilla", -1,
                "plain bridged below vanilla on 4 of 10 (Caltech-101, DTD, Dogs, Pets)", REVIEWS,
                "< 0 on 4 of 10"),
               ("Bridged + head reset beats vanilla", "bridged-reinit", "vanilla", +1,
                "the ablation's middle step, between bridged and bridged++ (values not in our "
                "sources)", REVIEWS, "> 0"),
               ("Head reset helps bridged (ablation)", "bridged-reinit", "bridged", +1, order,
                REVIEWS, "> 0"),
               ("Mixup helps on top of the head reset (ablation)", "bridged++", "bridged-reinit",
                +1, order, REVIEWS, "> 0")]
    for claim, a, b, sign, paper, source, number in recipes:
        for shots, where in SHOT_SETTINGS:
            rules.append(Rule(claim, f"{where}, {DEFAULT_VOLUME}/class, vs {b}",
                              _runs(a, shots), _runs(b, shots), sign, paper, source, number))
            if b == "vanilla":  # and against the fair-budget control
                rules.append(Rule(claim, f"{where}, {DEFAULT_VOLUME}/class, vs compute-matched "
                                  f"vanilla", _runs(a, shots), _matched(shots), sign, paper,
                                  source, number))
    volume = "accuracy rises from 500 to 3,000 images/class, not saturated (Aircraft, Cars, Food)"
    both = ("seed", "gen_seed")
    for shots, where in SHOT_SETTINGS:
        for big, small, what in ((400, 25, "More synthetic images keep helping"),
                                 (400, 200, "Volume is not saturated")):
            at = dict(fixed_steps=FIXED_BUDGET, gen_seed=[0, 1])
            rules.append(Rule(what, f"{where}, bridged++ {big} vs {small}/class, "
                              f"{FIXED_BUDGET} synthetic steps", _runs("bridged++", shots,
                                                                       volume=big, **at),
                              _runs("bridged++", shots, volume=small, **at), +1, volume,
                              REVIEWS, "> 0 (500 → 3,000)", pair_on=both))
    rules.append(Rule("Robust to the guidance scale", "4 shots, bridged++ 100/class, guidance "
                      "7.5 vs 2 (1, no guidance, shown, not scored)",
                      _runs("bridged++", 4, volume=100, guidance=7.5, gen_seed=[0, 1]),
                      _runs("bridged++", 4, volume=100, guidance=2.0, gen_seed=[0, 1]), 0,
                      "results are robust to the guidance scale (scales not given)", REVIEWS,
                      "≈ 0", pair_on=both))
    dsi = "bridged++ with DSI above the single template: Aircraft +0.6, Cars +0.4, SUN397 +2.6"
    for shots, where in SHOT_SETTINGS:
        rules.append(Rule("DSI images beat the single template", f"{where}, bridged++ "
                          f"{DEFAULT_VOLUME}/class", _runs("bridged++", shots, template="dsi",
                                                          gen_seed=[0, 1]),
                          _runs("bridged++", shots, gen_seed=[0, 1]), +1, dsi,
                          "the paper's table, as quoted by a review", "+0.4 to +2.6",
                          pair_on=both))
    for shots, where in SHOT_SETTINGS:
        rules.append(Rule("Bridged models converge faster on the real data",
                          f"{where}, first {EARLY_EPOCHS} real epochs, bridged++ vs vanilla",
                          _runs("bridged++", shots), _runs("vanilla", shots), +1,
                          "bridged-initialised models converge faster (no numbers given)",
                          REVIEWS, "> 0", metric="early_acc"))
    for shots, where in SHOT_SETTINGS:  # LEEP of the same run before and after its first stage
        rules.append(Rule("LEEP is higher after the synthetic stage", f"{where}, bridged++ "
                          f"{DEFAULT_VOLUME}/class", _runs("bridged++", shots),
                          _runs("bridged++", shots), +1,
                          "Aircraft −4.30 (ImageNet model) → −3.41 after synthetic fine-tuning; "
                          "higher on all ten", REVIEWS, "+0.89 (Aircraft)", pair_on=("run",),
                          metric="leep", cols=("leep_after_synthetic", "leep_pretrained")))
    return rules


RULES: list[Rule] = _rules()


# ---------------------------------------------------------------- statistics
def paired_interval(diffs, level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of paired differences: a t interval (nan bounds below 2 pairs)."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(d.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def verdict(mean: float, low: float, high: float, n: int, direction: int,
            n_test: int | None = None, margin: float | None = None) -> str:
    """One of VERDICTS from a paired interval (see the module docstring). `n_test`: test images
    behind an accuracy (a difference under NOISE_IMAGES of them is noise); `margin`: the
    equivalence margin of a direction-0 claim, in the difference's units."""
    if n < 2 or not (math.isfinite(low) and math.isfinite(high)):
        return "not measured"
    if direction == 0:
        if -margin <= low and high <= margin:
            return "reproduced"
        return "opposite" if low > margin or high < -margin else "within noise"
    if low <= 0 <= high or (n_test and abs(mean) * n_test < NOISE_IMAGES):
        return "within noise"
    return "reproduced" if np.sign(mean) == direction else "opposite"


# ---------------------------------------------------------------- the claims
def claim_verdicts(store: pd.DataFrame, histories: pd.DataFrame | None = None,
                   rules: list[Rule] | None = None) -> pd.DataFrame:
    """One row per rule (COLUMNS): the paired difference in its unit (points of accuracy, or
    LEEP), its interval and n, the difference in test images and the verdict.

    `store`: the results store (store.read_store); `histories`: the tidy per-epoch table
    (needed by the convergence rules only).
    """
    store = store.copy()
    if histories is not None and not histories.empty:
        store["early_acc"] = store["run"].map(early_accuracy(histories))
    return pd.DataFrame([compare(store, rule) for rule in (rules or RULES)], columns=COLUMNS)


def compare(store: pd.DataFrame, rule: Rule) -> list:
    """The row of one rule on `store`."""
    unit = "LEEP" if rule.metric == "leep" else "points"
    col_a, col_b = rule.cols or (rule.metric, rule.metric)
    diffs = paired_differences(store, rule.a, rule.b, rule.pair_on, col_a, col_b)
    mean, low, high, n = paired_interval(diffs)
    scale = 1.0 if unit == "LEEP" else 100.0
    n_test = None
    if unit == "points" and "n_test" in store and n:
        n_test = int(pd.to_numeric(store["n_test"]).max())
        if rule.metric == "early_acc":  # per-epoch accuracy is read on the monitor subset
            n_test = min(n_test, MONITOR_IMAGES)
    margin = EQUIVALENCE_POINTS / 100 if rule.direction == 0 else None
    v = verdict(mean, low, high, n, rule.direction, n_test, margin)
    images = round(mean * n_test, 1) if n_test and math.isfinite(mean) else math.nan
    return [rule.claim, rule.setting, _round(mean * scale), _round(low * scale),
            _round(high * scale), n, images, unit, v, rule.paper_diff, rule.paper, rule.source]


def select(store: pd.DataFrame, where: dict) -> pd.DataFrame:
    """The runs matching `where` ({column: value or list of values}); shots compared as text,
    so 4 and "4" and "full" all match."""
    mask = pd.Series(True, index=store.index)
    for col, want in where.items():
        if col not in store:
            return store.iloc[:0]
        values = store[col]
        allowed = want if isinstance(want, list) else [want]
        if col == "shots":
            mask &= values.astype(str).isin([str(v) for v in allowed])
        elif col in ("volume", "guidance", "gen_seed", "fixed_steps"):
            mask &= pd.to_numeric(values, errors="coerce").isin([float(v) for v in allowed])
        else:
            mask &= values.isin(allowed)
    return store[mask]


def paired_differences(store, a: dict, b: dict, pair_on=("seed",), col_a="test_acc",
                       col_b="test_acc") -> pd.Series:
    """a's value minus b's, one per pair of runs that share every `pair_on` column (a side
    without a generation seed, vanilla, pairs on the others); several runs of one side with the
    same key are averaged first."""
    runs_a, runs_b = select(store, a), select(store, b)
    if runs_a.empty or runs_b.empty or col_a not in store or col_b not in store:
        return pd.Series(dtype=float)
    keys = [k for k in pair_on if k in store and runs_b[k].notna().any() and runs_a[k].notna().any()]
    side_a = runs_a.assign(value=pd.to_numeric(runs_a[col_a])).groupby(keys)["value"].mean()
    side_b = runs_b.assign(value=pd.to_numeric(runs_b[col_b])).groupby(keys)["value"].mean()
    both = pd.concat([side_a.rename("a"), side_b.rename("b")], axis=1, join="inner")
    return (both["a"] - both["b"]).dropna()


def early_accuracy(histories: pd.DataFrame, stage: str = "real",
                   epochs: int = EARLY_EPOCHS) -> pd.Series:
    """Per run, the mean test accuracy over the first `epochs` epochs of `stage`."""
    h = histories[(histories["stage"] == stage) & histories["test_acc"].notna()]
    h = h[h.groupby("run")["epoch"].rank(method="first") <= epochs]
    return h.groupby("run")["test_acc"].mean()


def _round(x: float) -> float:
    return round(x, 3) if math.isfinite(x) else math.nan


def claims_markdown(table: pd.DataFrame) -> str:
    """The verdicts as a markdown table (README's claims table and notebook 06 render this,
    so the two cannot disagree): difference [95% interval] in its unit, n, verdict, paper."""
    lines = ["| claim | setting | mini world: difference [95% interval] | n | verdict | paper |",
             "|---|---|---|---|---|---|"]
    for row in table.itertuples():
        unit = " points" if row.unit == "points" else " LEEP"
        measured = (f"{row.diff:+.2f}{unit} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]"
                    if row.n >= 2 else "—")
        lines.append(f"| {row.claim} | {row.setting} | {measured} | {row.n} | {row.verdict} | "
                     f"{row.paper_diff} |")
    return "\n".join(lines) + "\n"


def difference_text(mean: float, low: float, high: float, n: int | None = None, *,
                    scale: float = 100.0, unit: str = "points", digits: int = 2,
                    n_test: int | None = None) -> str:
    """One comparison in words, for a notebook's rendered prose: "+3.41 points [+1.20, +5.62],
    n = 5", then ", within noise" when the interval contains 0 (for a paired interval with `n`,
    by `verdict`'s rule, so under NOISE_IMAGES of `n_test` test images too); "(n = 1: too few
    pairs for an interval)" without one. `scale` turns fractions into points (1.0: as is)."""
    unit = f" {unit}" if unit else ""
    head = f"{mean * scale:+.{digits}f}{unit}"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{head} (n = {n}: too few pairs for an interval)" if n is not None else head
    text = f"{head} [{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"
    if n is not None:
        text += f", n = {n}"
        noisy = verdict(mean, low, high, n, 1 if mean >= 0 else -1, n_test) == "within noise"
    else:
        noisy = low <= 0 <= high
    return text + (", within noise" if noisy else "")


def paired_text(diffs, **kwargs) -> str:
    """`difference_text` of paired differences a − b (their mean, 95% t interval and n)."""
    return difference_text(*paired_interval(diffs), **kwargs)


def verdict_summary(table: pd.DataFrame) -> str:
    """A few markdown lines that say what the verdicts say: the count of each, then every row
    that is not within noise, with its numbers (notebooks render this instead of typed prose)."""
    counts = table["verdict"].value_counts()
    lines = ["- " + ", ".join(f"**{counts.get(v, 0)}** {v}" for v in VERDICTS)
             + f" (of {len(table)} claim settings)."]
    for verdict_ in ("reproduced", "opposite"):
        for row in table[table["verdict"] == verdict_].itertuples():
            unit = "points" if row.unit == "points" else "LEEP"
            lines.append(f"- *{verdict_}*: {row.claim} ({row.setting}): {row.diff:+.2f} {unit} "
                         f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}], n = {row.n}; "
                         f"paper {row.paper_diff}.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the mixing map's table
def mixing_table(runs: pd.DataFrame, baseline: str = "vanilla") -> pd.DataFrame:
    """mixed − vanilla per (shots, volume), paired by seed (gen seed 0, the recipes' own
    budgets), with the real share, its interval and n, and what synthetic-only scores at that
    volume (what the synthetic images alone can teach)."""
    runs = runs.assign(**{c: v for c, v in {**BASE, "gen_seed": 0, "template": "single"}.items()
                          if c not in runs})  # a store made before these columns existed
    mixed = select(runs, {**BASE, "recipe": "mixed", "template": "single", "gen_seed": 0})
    only = runs[runs["recipe"] == "synthetic-only"].groupby("volume")["test_acc"].mean()
    rows = []
    for (shots, volume), group in mixed.groupby(["shots", "volume"], sort=False):
        at = {"shots": shots, "template": "single", "gen_seed": 0}
        d = paired_differences(runs, {**BASE, **at, "recipe": "mixed", "volume": int(volume)},
                               {**BASE, "recipe": baseline, "shots": shots})
        mean, low, high, n = paired_interval(d)
        ratio = float(group["syn_per_real"].mean()) if "syn_per_real" in group else math.nan
        rows.append({"shots": shots, "volume": int(volume), "syn_per_real": ratio,
                     "real_share": 1 / (1 + ratio), "diff": mean * 100,
                     "ci_low": low * 100, "ci_high": high * 100, "n": n,
                     "synthetic_only": only.get(volume, np.nan)})
    table = pd.DataFrame(rows, columns=["shots", "volume", "syn_per_real", "real_share", "diff",
                                        "ci_low", "ci_high", "n", "synthetic_only"])
    return table.sort_values(["shots", "syn_per_real"], key=paper_order, ignore_index=True)
