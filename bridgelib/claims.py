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
           "verdict", "p_value", "holm_verdict", "min_detectable", "paper_diff", "paper",
           "source"]
EARLY_EPOCHS = 3            # "converges faster": mean test accuracy over the first real epochs
NOISE_IMAGES = 2            # a difference under 2 test images is noise, whatever the interval
MONITOR_IMAGES = 2000       # per-epoch accuracy is read on this many (config.monitor_images)
EQUIVALENCE_POINTS = 2.0    # "robust to guidance": every value within ±2 points of another
LEVEL = 0.95
POWER = 0.80                # min_detectable: the effect a row finds 80% of the time at LEVEL
# The mixing ratio, synthetic : real (synthetic images per real image in a mixed run's
# training data; the store's column `syn_per_real`) of the mixing map: 50%, 20%, 6.25% and 4%
# real (the paper's 15-24 : 1). Not config's `train.mixed_real_fraction` (a mixed batch's
# real share).
SYN_PER_REAL = (1, 4, 15, 24)
# The paper's setting (the store's main one): 1,500 synthetic images per class (`per_class`), 15
# per real image on the full pool, the synthetic stage at its epochs, both arms in fp32.
PAPER_PER_CLASS = 1500
PAPER_BUDGET = 940          # synthetic-stage steps at 1,500/class (the volume study's fixed budget)
PAPER_PER_CLASS_RANGE = (500, 1500, 3000)  # the paper's volume study, per class
DSI_FEW_SHOT_PER_CLASS = 200  # DSI at 4 shots: one token and one set per k-shot subset
# The second setting (the store's first): 200 per class, 2 per real image, any precision.
DEFAULT_PER_CLASS = 200     # the second setting's synthetic images per class
FIXED_BUDGET = 125          # its volume family's synthetic-stage steps (at 200/class's epochs)

# What a run of the store is unless a rule says otherwise: pretrained, its recipe's own budget,
# not compute-matched. Synthetic recipes also: the single template, the profile's guidance and
# the first generation seed, at the setting's images per class and precision.
BASE = {"scratch": False, "match_compute": False, "fixed_steps": 0}
SYNTHETIC = {"template": "single", "guidance": 3.0, "gen_seed": 0}
PAPER = {"precision": "fp32"}
SECOND = {"precision": "auto"}
SETTINGS = {"paper": PAPER, "second": SECOND}  # setting_runs' names for them


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


def _runs(recipe: str, shots, setting: dict = PAPER, **where) -> dict:
    """The runs of `recipe` at `shots` in a setting (PAPER or SECOND): synthetic recipes at the
    setting's `per_class` unless `where` names one."""
    per_class = PAPER_PER_CLASS if setting is PAPER else DEFAULT_PER_CLASS
    synthetic = {} if recipe == "vanilla" else {**SYNTHETIC, "per_class": per_class}
    mixed = {"mixed_budget": "bridged"} if recipe == "mixed" else {}
    return {**BASE, **setting, **synthetic, **mixed, "recipe": recipe, "shots": shots, **where}


def _matched(shots, setting: dict = PAPER, per_class=None, **where) -> dict:
    """The vanilla trained as many steps as bridged at `per_class` (the fair-budget control)."""
    per_class = per_class or (PAPER_PER_CLASS if setting is PAPER else DEFAULT_PER_CLASS)
    return {**BASE, **setting, "recipe": "vanilla", "shots": shots, "per_class": per_class,
            "match_compute": True, **where}


REVIEW = "the paper, as quoted by a review"
REVIEWS = "the paper, as quoted by reviews and summaries"
TABLE = "the paper's table, as quoted by a review"
SHOT_SETTINGS = (("full", "full pool"), (4, "4 shots"))
BOTH = ("seed", "gen_seed")
RECIPE_CLAIMS = [  # (claim, a, b, direction, paper, source, paper_diff)
    ("Bridged++ beats vanilla", "bridged++", "vanilla", +1,
     "bridged++ above vanilla on all ten, e.g. Aircraft 79.7 → 85.2, Cars 83.8 → 91.6",
     TABLE, "+5.5, +7.8"),
    ("Plain bridged is below vanilla somewhere", "bridged", "vanilla", -1,
     "plain bridged below vanilla on 4 of 10 (Caltech-101, DTD, Dogs, Pets)", REVIEWS,
     "< 0 on 4 of 10"),
    ("Bridged + head reset beats vanilla", "bridged-reinit", "vanilla", +1,
     "the ablation's middle step, between bridged and bridged++ (values not in our sources)",
     REVIEWS, "> 0"),
    ("Head reset helps bridged (ablation)", "bridged-reinit", "bridged", +1,
     "bridged < bridged + head reset < bridged++ (the recipes' order)", REVIEWS, "> 0"),
    ("Mixup helps on top of the head reset (ablation)", "bridged++", "bridged-reinit", +1,
     "bridged < bridged + head reset < bridged++ (the recipes' order)", REVIEWS, "> 0")]


def _where(shots_name: str, setting: dict) -> str:
    if setting is PAPER:
        return f"{shots_name}, {PAPER_PER_CLASS:,}/class"
    return f"{shots_name}, {DEFAULT_PER_CLASS}/class (second setting)"


def _rules() -> list[Rule]:
    return [*_mixing_rules(), *_recipe_rules(), *_dsi_rules(), *_volume_rules(),
            *_diagnostic_rules()]


def _mixing_rules() -> list[Rule]:
    mixed = ("mixed is 6–10 points below vanilla on all ten datasets (full data, ~15–24 "
             "synthetic per real)")
    rules = []
    for budget, how in (("bridged", "bridged's steps"), ("epochs", "vanilla's epochs")):
        rules.append(Rule("Mixed transfer is below vanilla", f"full pool, 15 : 1, {how}, vs "
                          f"vanilla", _runs("mixed", "full", mixed_budget=budget, gen_seed=0),
                          _runs("vanilla", "full"), -1, mixed, REVIEW, "−6 to −10"))
    for ratio in (15, 24):
        per_class = POOL_PER_CLASS * ratio
        for b, vs in ((_runs("vanilla", "full", SECOND), "vanilla"),
                      (_matched("full", SECOND, per_class), "compute-matched vanilla")):
            rules.append(Rule("Mixed transfer is below vanilla", f"full pool, {ratio} : 1 "
                              f"(second setting), vs {vs}",
                              _runs("mixed", "full", SECOND, per_class=per_class), b, -1, mixed,
                              REVIEW, "−6 to −10"))
    return rules


def _recipe_rules() -> list[Rule]:
    """The recipes against vanilla and each other. In the paper's setting both generation seeds
    count: a pair is (training seed, generation seed) where both sides have one; vanilla has
    none, so against it a seed's synthetic runs are averaged first (n = training seeds: pairing
    one vanilla run twice would count it as two). At the full pool training seed s trains on
    generation seed s % 2 alone (the builder's `alternate_gen_seeds`), so its 10 seeds are 10
    independent pairs. The second setting keeps generation seed 0."""
    rules = []
    for setting in (PAPER, SECOND):
        gen = {"gen_seed": [0, 1]} if setting is PAPER else {}
        pair = BOTH if setting is PAPER else ("seed",)
        for claim, a, b, sign, paper, source, number in RECIPE_CLAIMS:
            for shots, name in SHOT_SETTINGS:
                where = _where(name, setting)
                rules.append(Rule(claim, f"{where}, vs {b}", _runs(a, shots, setting, **gen),
                                  _runs(b, shots, setting, **({} if b == "vanilla" else gen)),
                                  sign, paper, source, number, pair_on=pair))
                if b == "vanilla":  # and against the fair-budget control
                    rules.append(Rule(claim, f"{where}, vs compute-matched vanilla",
                                      _runs(a, shots, setting, **gen),
                                      _matched(shots, setting, **gen), sign, paper,
                                      source, number, pair_on=pair))
    return rules


def _dsi_rules() -> list[Rule]:
    dsi = "bridged++ with DSI above the single template: Aircraft +0.6, Cars +0.4, SUN397 +2.6"
    dsi_vs_vanilla = ("bridged++ with DSI images above vanilla: Aircraft 79.7 → 85.8, "
                      "Cars 83.8 → 92.0")
    full = {"per_class": PAPER_PER_CLASS, "gen_seed": [0, 1]}
    k4 = {"per_class": DSI_FEW_SHOT_PER_CLASS, "gen_seed": 0}
    # a 4-shot DSI run counts only if its token saw its own 4 images per class (a token learned
    # on the pool would leak all 100 real images per class into a 4-shot arm)
    k4_dsi = {**k4, "template": "dsi", "token_real_per_class": 4}
    where_k4 = (f"4 shots, {DSI_FEW_SHOT_PER_CLASS}/class, each arm's token learned on its own "
                "40 images")
    rules = [
        Rule("Bridged++ on DSI images beats vanilla", f"full pool, {PAPER_PER_CLASS:,}/class, vs "
             f"vanilla", _runs("bridged++", "full", template="dsi", **full),
             _runs("vanilla", "full"), +1, dsi_vs_vanilla, TABLE, "+6.1, +8.2"),
        Rule("Bridged++ on DSI images beats vanilla", f"full pool, {PAPER_PER_CLASS:,}/class, vs "
             f"compute-matched vanilla", _runs("bridged++", "full", template="dsi", **full),
             _matched("full", gen_seed=[0, 1]), +1, dsi_vs_vanilla, TABLE, "+6.1, +8.2",
             pair_on=BOTH),
        Rule("Bridged++ on DSI images beats vanilla", f"{where_k4}, vs vanilla",
             _runs("bridged++", 4, **k4_dsi), _runs("vanilla", 4), +1,
             dsi_vs_vanilla, TABLE, "+6.1, +8.2"),
        Rule("DSI images beat the single template", f"full pool, {PAPER_PER_CLASS:,}/class, "
             f"bridged++", _runs("bridged++", "full", template="dsi", **full),
             _runs("bridged++", "full", **full), +1, dsi, TABLE, "+0.4 to +2.6", pair_on=BOTH),
        Rule("DSI images beat the single template", f"{where_k4}, bridged++",
             _runs("bridged++", 4, **k4_dsi), _runs("bridged++", 4, **k4), +1, dsi,
             TABLE, "+0.4 to +2.6", pair_on=BOTH),
        Rule("DSI images beat the single template", f"full pool, {DEFAULT_PER_CLASS}/class "
             f"(second setting), bridged++",
             _runs("bridged++", "full", SECOND, template="dsi", gen_seed=[0, 1]),
             _runs("bridged++", "full", SECOND, gen_seed=[0, 1]), +1, dsi, TABLE,
             "+0.4 to +2.6", pair_on=BOTH)]
    return rules


def _volume_rules() -> list[Rule]:
    paper = "accuracy rises from 500 to 3,000 images/class, not saturated (Aircraft, Cars, Food)"
    rules = []
    small, middle, big = PAPER_PER_CLASS_RANGE
    for shots, name in SHOT_SETTINGS:
        seeds = {"gen_seed": [0, 1]} if shots == "full" else {"gen_seed": 0}
        for what, lower in (("More synthetic images keep helping", small),
                            ("Volume is not saturated", middle)):
            # epochs fixed: a bigger set also trains longer, as a study that adds images does
            rules.append(Rule(what, f"{name}, bridged++ {big:,} vs {lower:,}/class, epochs fixed",
                              _runs("bridged++", shots, per_class=big, **seeds),
                              _runs("bridged++", shots, per_class=lower, **seeds), +1, paper,
                              REVIEWS, "> 0 (500 → 3,000)", pair_on=BOTH))
            # steps fixed at the 1,500 set's epoch budget (whose epoch run is that budget)
            b = _runs("bridged++", shots, per_class=lower, **seeds,
                      fixed_steps=PAPER_BUDGET if lower != PAPER_PER_CLASS else 0)
            rules.append(Rule(what, f"{name}, bridged++ {big:,} vs {lower:,}/class, "
                              f"{PAPER_BUDGET} synthetic steps",
                              _runs("bridged++", shots, per_class=big, fixed_steps=PAPER_BUDGET,
                                    **seeds), b, +1, paper, REVIEWS, "> 0 (500 → 3,000)",
                              pair_on=BOTH))
    for shots, name in SHOT_SETTINGS:  # the second setting: 25-400/class at 125 steps
        for big_, small_, what in ((400, 25, "More synthetic images keep helping"),
                                   (400, 200, "Volume is not saturated")):
            at = dict(fixed_steps=FIXED_BUDGET, gen_seed=[0, 1])
            rules.append(Rule(what, f"{name}, bridged++ {big_} vs {small_}/class, "
                              f"{FIXED_BUDGET} synthetic steps (second setting)",
                              _runs("bridged++", shots, SECOND, per_class=big_, **at),
                              _runs("bridged++", shots, SECOND, per_class=small_, **at), +1,
                              paper, REVIEWS, "> 0 (500 → 3,000)", pair_on=BOTH))
    rules.append(Rule("Robust to the guidance scale", "4 shots, bridged++ 100/class, guidance "
                      "7.5 vs 2 (second setting; 1, no guidance, shown, not scored)",
                      _runs("bridged++", 4, SECOND, per_class=100, guidance=7.5, gen_seed=[0, 1]),
                      _runs("bridged++", 4, SECOND, per_class=100, guidance=2.0, gen_seed=[0, 1]),
                      0, "results are robust to the guidance scale (scales not given)", REVIEWS,
                      "≈ 0", pair_on=BOTH))
    return rules


def _diagnostic_rules() -> list[Rule]:
    rules = []
    for shots, name in SHOT_SETTINGS:
        for setting in (PAPER, SECOND):
            gen = {"gen_seed": [0, 1]} if setting is PAPER else {}
            rules.append(Rule("Bridged models converge faster on the real data",
                              f"{_where(name, setting)}, first {EARLY_EPOCHS} real epochs, "
                              f"bridged++ vs vanilla", _runs("bridged++", shots, setting, **gen),
                              _runs("vanilla", shots, setting), +1,
                              "bridged-initialised models converge faster (no numbers given)",
                              REVIEWS, "> 0", metric="early_acc"))
    for shots, name in SHOT_SETTINGS:
        # LEEP of the same run before and after its synthetic stage, on plain bridged runs
        # (the paper's diagnosis precedes Mixup, which alone lowers the after-stage LEEP),
        # estimated out of sample (metrics.leep_score: P(y|z) fitted on one half)
        rules.append(Rule("LEEP is higher after the synthetic stage", f"{_where(name, PAPER)}, "
                          f"plain bridged, out-of-sample LEEP",
                          _runs("bridged", shots, gen_seed=[0, 1], leep_estimate=OUT_OF_SAMPLE),
                          _runs("bridged", shots, gen_seed=[0, 1], leep_estimate=OUT_OF_SAMPLE),
                          +1, "Aircraft −4.30 (ImageNet model) → −3.41 after synthetic "
                          "fine-tuning; higher on all ten", REVIEWS, "+0.89 (Aircraft)",
                          pair_on=("run",), metric="leep",
                          cols=("leep_after_synthetic", "leep_pretrained")))
    return rules


OUT_OF_SAMPLE = "out-of-sample halves"  # transfer.train_run's `leep_estimate`
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
    table = pd.DataFrame([compare(store, rule) for rule in (rules or RULES)], columns=COLUMNS)
    return holm(table)


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
    p = p_value(diffs, rule.direction, margin)
    # unrounded: a table rounds once, where it is shown (a bound rounded twice was off by 0.01)
    return [rule.claim, rule.setting, mean * scale, low * scale, high * scale, n, images, unit,
            v, p, v, min_detectable(diffs) * scale, rule.paper_diff, rule.paper, rule.source]


def p_value(diffs, direction: int, margin: float | None = None) -> float:
    """Two-sided p of a paired t test that the mean difference is 0; for an equivalence
    (direction 0), the TOST p that it lies within ±margin (the larger of the two one-sided
    p-values). NaN below 2 pairs or with no spread."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2 or d.std(ddof=1) == 0:
        return math.nan
    if direction == 0:
        low = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        high = stats.ttest_1samp(d, margin, alternative="less").pvalue
        return float(max(low, high))
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def min_detectable(diffs, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true mean difference a paired t test with these pairs would find with
    `power` at `level` (two-sided), from their own spread: (t_{1-a/2} + t_power) sd / sqrt(n).
    What "within noise" means for the row: effects below this are not ruled out."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        return math.nan
    t = stats.t.ppf(0.5 + level / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(t * d.std(ddof=1) / math.sqrt(n))


def holm(table: pd.DataFrame, alpha: float = 1 - LEVEL) -> pd.DataFrame:
    """`holm_verdict`: the verdict again after Holm's step-down correction over every scored
    row (a p-value): a reproduced or opposite row whose adjusted p is not below `alpha` becomes
    within noise; an unscored row keeps its verdict. Many rows at 5% each would otherwise find
    some effect by chance."""
    table = table.copy()
    p = pd.to_numeric(table["p_value"], errors="coerce")
    scored = p.dropna().sort_values()
    m, running, adjusted = len(scored), 0.0, {}
    for i, (idx, value) in enumerate(scored.items()):
        running = max(running, min(1.0, (m - i) * value))
        adjusted[idx] = running
    for idx, value in adjusted.items():
        if table.at[idx, "verdict"] in ("reproduced", "opposite") and value >= alpha:
            table.at[idx, "holm_verdict"] = "within noise"
    return table


def setting_runs(store: pd.DataFrame, setting: str) -> pd.DataFrame:
    """The store's runs of one of its two settings, which a figure never pools: "paper" (PAPER:
    fp32 runs, 500-3,000 synthetic images per class) or "second" (SECOND: 25-400 per class, the
    precision "auto"; a store from before precision was recorded is all "second")."""
    if setting not in SETTINGS:
        raise ValueError(f"setting {setting!r} is not one of the store's settings "
                         f"{sorted(SETTINGS)}")
    return select(store, SETTINGS[setting])


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
        elif col in ("per_class", "guidance", "gen_seed", "fixed_steps", "token_real_per_class"):
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


def claims_markdown(table: pd.DataFrame) -> str:
    """The verdicts as a markdown table (README's claims table and notebook 06 render this,
    so the two cannot disagree): difference [95% interval] in its unit, n, verdict, the verdict
    after Holm's correction over all rows, the smallest effect the row could resolve (80% power),
    and the paper's number. Rounded here, once, from the unrounded values."""
    lines = ["| claim | setting | mini world: difference [95% interval] | n | verdict | after Holm "
             "| resolves ≥ | paper |", "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        unit = " points" if row.unit == "points" else " LEEP"
        measured = (f"{row.diff:+.2f}{unit} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]"
                    if row.n >= 2 else "—")
        holm_verdict = getattr(row, "holm_verdict", row.verdict)
        mde = getattr(row, "min_detectable", math.nan)
        resolves = f"{mde:.2f}" if isinstance(mde, float) and math.isfinite(mde) else "—"
        lines.append(f"| {row.claim} | {row.setting} | {measured} | {row.n} | {row.verdict} | "
                     f"{holm_verdict} | {resolves} | {row.paper_diff} |")
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
    """mixed − vanilla per (shots, per_class), paired by seed (gen seed 0, the recipes' own
    budgets), with the real share, its interval and n, and what synthetic-only scores at that
    per_class (what the synthetic images alone can teach)."""
    runs = runs.assign(**{c: v for c, v in {**BASE, "gen_seed": 0, "template": "single"}.items()
                          if c not in runs})  # a store made before these columns existed
    mixed = select(runs, {**BASE, "recipe": "mixed", "template": "single", "gen_seed": 0})
    only = runs[runs["recipe"] == "synthetic-only"].groupby("per_class")["test_acc"].mean()
    rows = []
    for (shots, per_class), group in mixed.groupby(["shots", "per_class"], sort=False):
        at = {"shots": shots, "template": "single", "gen_seed": 0}
        d = paired_differences(runs, {**BASE, **at, "recipe": "mixed", "per_class": int(per_class)},
                               {**BASE, "recipe": baseline, "shots": shots})
        mean, low, high, n = paired_interval(d)
        ratio = float(group["syn_per_real"].mean()) if "syn_per_real" in group else math.nan
        rows.append({"shots": shots, "per_class": int(per_class), "syn_per_real": ratio,
                     "real_share": 1 / (1 + ratio), "diff": mean * 100,
                     "ci_low": low * 100, "ci_high": high * 100, "n": n,
                     "synthetic_only": only.get(per_class, np.nan)})
    table = pd.DataFrame(rows, columns=["shots", "per_class", "syn_per_real", "real_share", "diff",
                                        "ci_low", "ci_high", "n", "synthetic_only"])
    return table.sort_values(["shots", "syn_per_real"], key=paper_order, ignore_index=True)
