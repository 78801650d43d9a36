"""The paper's figures, drawn from a results store (one row per run; `bridgelib.store`).

A figure holds every study column it does not show at one value (`store.hold_fixed`) and says
which in its title; "mini" in `profile` labels it a mini-world result. Every number plotted
comes from `store.aggregate` (mean, std, count of test accuracy over seeds), and
`write_report` saves each figure with the table behind it, the claims' verdicts
(`bridgelib.claims`) and their forest plot. Figures are bare `Figure` objects (no pyplot
state): a notebook shows the one a cell returns; nothing calls `plt.show()`.

Taught in notebooks 03, 05, 06.
"""
from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from bridgelib.claims import (BASE, PAPER_BUDGET, PAPER_PER_CLASS, SYN_PER_REAL, VERDICTS,
                              claim_verdicts, mixing_table, paired_differences,
                              paired_interval, select)
from bridgelib.config import DATA_DIR
from bridgelib.files import atomic_write_bytes, save_figure
from bridgelib.store import (RECIPE_ORDER, convergence_table, curve_table, radar_table,
                             shot_label, shots_table, study_values, template_vs_dsi_table)

log = logging.getLogger(__name__)
# One colour and one marker per recipe, in every figure: two recipes never look alike.
COLORS = {"vanilla": "#4d4d4d", "mixed": "tab:red", "bridged": "tab:orange",
          "bridged-reinit": "tab:green", "bridged++": "tab:blue", "synthetic-only": "tab:purple"}
MARKERS = {"vanilla": "s", "mixed": "v", "bridged": "^", "bridged-reinit": "D", "bridged++": "o",
           "synthetic-only": "X"}
# A held-fixed study column said in words: no internal field name in a figure's title.
HELD_WORDS = {
    "per_class": lambda v: f"{v:g} synthetic/class",
    "guidance": lambda v: f"guidance {v:g}",
    "template": lambda v: f"{v} template",
    "shots": lambda v: "the full pool" if v == "full" else f"{v} shots",
    "gen_seed": lambda v: f"generation seed {v:g}",
    "fixed_steps": lambda v: "each recipe's own budget" if not v else f"{v:g} synthetic-stage steps",
    "match_compute": lambda v: "compute-matched" if v else "",
    "scratch": lambda v: "trained from scratch" if v else "",
    "dataset": str,
}
YLABEL = "test top-1 accuracy (mean ± std over seeds)"


def _title(main: str, table: pd.DataFrame | None = None, runs: pd.DataFrame | None = None) -> str:
    """The title, then the values held fixed (a table's at_* columns), then the world: a
    `profile` column of "mini" marks results as the mini world's, not the paper's."""
    lines = [main]
    at = [held_words(c[3:], table[c].iloc[0]) for c in getattr(table, "columns", ())
          if c.startswith("at_")] if table is not None and len(table) else []
    if any(at):
        lines.append("at " + ", ".join(a for a in at if a))
    def values(col: str) -> list[str]:
        return sorted(map(str, set(runs[col].dropna()))) if runs is not None and col in runs else []
    profiles, folders = values("profile"), values("data_folder")  # folders: your own data
    if profiles == ["mini"] and not folders:
        lines.append("mini world: Fashion-MNIST at 32 px, tiny generator (not the paper's datasets)")
    elif profiles or folders:
        lines.append(", ".join(filter(None, (folders and f"dataset: {', '.join(folders)}",
                                             profiles and f"profile: {', '.join(profiles)}"))))
    return "\n".join(lines)


def held_words(column: str, value) -> str:
    """A held-fixed column's value in a title's words ("" where it is the default and says
    nothing, like not compute-matched); an unknown column as `column value`."""
    words = HELD_WORDS.get(column)
    try:
        return words(value) if words else f"{column.replace('_', ' ')} {value}"
    except (TypeError, ValueError):  # a value of an unexpected type: shown as is
        return f"{column.replace('_', ' ')} {value}"


def paper_results() -> pd.DataFrame:
    """Every number the paper reports (data/paper_results.csv; see its `note` column)."""
    return pd.read_csv(DATA_DIR / "paper_results.csv")


# ---------------------------------------------------------------- figures
def _axes(ax=None, polar: bool = False, size=(6.4, 4.2)):
    if ax is None:
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot(projection="polar" if polar else None)
    elif polar and ax.name != "polar":
        raise ValueError("radar needs a polar axes: fig.add_subplot(projection='polar')")
    return ax.figure, ax


def _style(ax, title: str, xlabel: str, ylabel: str = YLABEL) -> None:
    ax.set_title(title, fontsize=10)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=9)


def _curves(ax, table: pd.DataFrame, x: str, xpos=None, dodge: float = 1.0) -> None:
    """One error-bar line per recipe; a recipe without x values is a dashed reference band.
    `dodge` > 1 (a log axis): recipes with a single point are spread by that factor around it,
    so several recipes run at one volume do not hide behind each other. A table with a
    `scratch` column draws its from-scratch runs as a second line per recipe (dashed, open
    markers, "recipe, from scratch")."""
    if "scratch" in table:
        for (recipe, scratch), t in table.groupby(["recipe", "scratch"], sort=False):
            ax.errorbar(t[x].map(xpos) if xpos else t[x], t["mean"], yerr=t["std"].fillna(0),
                        marker=MARKERS.get(recipe, "o"), ms=5, capsize=3, alpha=0.9,
                        color=COLORS.get(recipe), mfc="none" if scratch else None,
                        ls="--" if scratch else "-",
                        label=f"{recipe}, from scratch" if scratch else recipe)
        return
    singles = [r for r, t in table.groupby("recipe", sort=False) if t[x].notna().sum() == 1]
    for recipe, t in table.groupby("recipe", sort=False):
        color = COLORS.get(recipe)
        if t[x].isna().all():
            m, s = t["mean"].iloc[0], np.nan_to_num(t["std"].iloc[0])
            ax.axhline(m, ls="--", lw=1.2, color=color, label=f"{recipe} (reference)", zorder=1)
            ax.axhspan(m - s, m + s, color=color or "grey", alpha=0.12, lw=0)
            continue
        xv = t[x].map(xpos) if xpos else t[x]
        if recipe in singles and dodge != 1.0:
            xv = xv * dodge ** (singles.index(recipe) - (len(singles) - 1) / 2)
        ax.errorbar(xv, t["mean"], yerr=t["std"].fillna(0), marker=MARKERS.get(recipe, "o"),
                    ms=5, capsize=3, color=color, label=recipe, alpha=0.9)


def accuracy_vs_per_class(runs: pd.DataFrame, recipes=None, ax=None, *,
                          title: str | None = None) -> Figure:
    """Accuracy vs synthetic images per class (log2 axis): the paper's volume study."""
    fig, ax = _axes(ax)
    _curves(ax, table := curve_table(runs, "per_class", recipes), "per_class", dodge=1.12)
    ax.set_xscale("log", base=2)
    ticks = sorted(table["per_class"].dropna().unique())
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.minorticks_off()
    _style(ax, _title(title or "Test accuracy vs synthetic images per class", table, runs),
           "synthetic images per class (log₂ scale)")
    return fig


def accuracy_vs_guidance(runs: pd.DataFrame, recipes=None, ax=None, *,
                         title: str | None = None) -> Figure:
    """Accuracy vs the generator's classifier-free guidance scale (the paper: robust to it)."""
    fig, ax = _axes(ax)
    _curves(ax, table := curve_table(runs, "guidance", recipes), "guidance")
    _style(ax, _title(title or "Test accuracy vs guidance scale", table, runs),
           "classifier-free guidance scale")
    return fig


def accuracy_vs_shots(runs: pd.DataFrame, recipes=("vanilla", "bridged++"), ax=None, *,
                      title: str | None = None, scratch: bool = False,
                      live: pd.DataFrame | None = None) -> Figure:
    """Accuracy vs real images per class (1, 2, 4, 8, 16, full), one line per recipe;
    scratch=True: a second line per recipe for its runs from scratch (what pretraining is
    worth). `live`: runs of one seed (recipe, shots, test_acc; scratch) drawn as crosses in
    their recipe's colour ("+" from scratch), without interval."""
    table = shots_table(runs, recipes, scratch=scratch)
    shown = set(table["shots"]) | set(live["shots"].map(shot_label) if live is not None else ())
    order = sorted(shown, key=lambda v: math.inf if v == "full" else v)
    pos = {s: i for i, s in enumerate(order)}
    fig, ax = _axes(ax)
    _curves(ax, table, "shots", xpos=pos)
    if live is not None and len(live):
        from_scratch = (live["scratch"].astype(bool) if "scratch" in live
                        else pd.Series(False, index=live.index))
        for marker, rows, words in (("x", live[~from_scratch], "live run (one seed)"),
                                    ("+", live[from_scratch], "live run from scratch")):
            if len(rows):
                ax.scatter(rows["shots"].map(shot_label).map(pos), rows["test_acc"], marker=marker,
                           s=70, linewidths=2, zorder=4, label=words,
                           c=[COLORS.get(r, "black") for r in rows["recipe"]])
    ax.set_xticks(range(len(order)), [str(s) for s in order])
    _style(ax, _title(title or "Test accuracy vs real training images per class", table, runs),
           "real images per class (shots)")
    return fig


def difference_table(runs: pd.DataFrame, recipes, by: str = "shots", baseline: str = "vanilla",
                     where: dict | None = None, baseline_where: dict | None = None) -> pd.DataFrame:
    """Per recipe and value of `by`: recipe − baseline in points, paired by training seed
    (`claims.paired_differences`), with its 95% interval and n. `where` holds the recipes' other
    columns fixed, `baseline_where` the baseline's; with by="shots" both sides share the shots."""
    where, rows = dict(where or {}), []
    for recipe in recipes:
        mine = select(runs, {**where, "recipe": recipe})
        for value in sorted(set(study_values(mine, by).dropna()),
                            key=lambda v: math.inf if v == "full" else float(v)):
            b = {**(baseline_where or {}), "recipe": baseline}
            if by == "shots":
                b["shots"] = value
            diffs = paired_differences(runs, {**where, "recipe": recipe, by: value}, b)
            mean, low, high, n = paired_interval(diffs)
            rows.append({"recipe": recipe, by: value, "diff": 100 * mean, "ci_low": 100 * low,
                         "ci_high": 100 * high, "n": n})
    return pd.DataFrame(rows, columns=["recipe", by, "diff", "ci_low", "ci_high", "n"])


def recipe_differences(runs: pd.DataFrame, recipes, by: str = "shots",
                       baseline: str = "vanilla", ax=None, *, where: dict | None = None,
                       baseline_where: dict | None = None, title: str | None = None,
                       live: pd.DataFrame | None = None) -> Figure:
    """Each recipe minus the baseline (points, paired by seed) with its 95% interval, per value
    of `by` in numeric order: a bar that crosses the 0 line (the baseline) is within noise.
    `live`: optional rows (recipe, `by`, diff) of one seed, drawn as crosses without interval."""
    table = difference_table(runs, recipes, by, baseline, where, baseline_where)
    return _differences(ax, _recipe_series(table), by, baseline, runs, live, title or
                        f"Each recipe minus {baseline}, paired by seed (95% intervals)",
                        f"no {recipes} run pairs with a {baseline!r} run of the same seed")


def _recipe_series(table: pd.DataFrame) -> list[tuple]:
    """A difference table's rows as one drawn series per recipe, in the recipe's colours."""
    return [(recipe, t, COLORS.get(recipe), MARKERS.get(recipe, "o"))
            for recipe, t in table.groupby("recipe", sort=False)]


def _differences(ax, series, by: str, baseline: str, runs: pd.DataFrame | None, live,
                 title: str, empty: str) -> Figure:
    """Draw (label, difference table, color, marker) series side by side per value of `by`;
    the title names the world of `runs` (None: the caller's figure title does)."""
    series = [(label, t[t["n"] > 0], c, m) for label, t, c, m in series]  # no pair: no point
    series = [s for s in series if len(s[1])]
    if not series:
        raise ValueError(empty)
    order = sorted({v for _, t, _, _ in series for v in t[by]},
                   key=lambda v: math.inf if v == "full" else float(v))
    pos = {v: i for i, v in enumerate(order)}
    step = 0.8 / max(1, len(series))
    fig, ax = _axes(ax, size=(max(7.2, 1.1 * len(order) + 3), 4.2))
    for k, (label, t, color, marker) in enumerate(series):
        shift = (k - (len(series) - 1) / 2) * step
        ax.errorbar(t[by].map(pos) + shift, t["diff"],
                    yerr=[t["diff"] - t["ci_low"], t["ci_high"] - t["diff"]],
                    fmt=marker, color=color, ms=6, capsize=3, label=label)
        lv = live[live["recipe"] == label] if live is not None else ()
        if len(lv):
            ax.plot(lv[by].map(pos) + shift, lv["diff"], "x", color="black", ms=8, mew=2,
                    zorder=4)
    if live is not None and len(live):
        ax.plot([], [], "x", color="black", ms=8, mew=2, label="live run (one seed)")
    ax.axhline(0, color=COLORS.get(baseline, "black"), lw=1.2, label=f"{baseline} (= 0)")
    labels = {"shots": lambda v: "full pool" if v == "full" else f"{v}-shot",
              "per_class": lambda v: f"{v:g}/class"}.get(by, str)
    ax.set_xticks(range(len(order)), [labels(v) for v in order])
    ax.set_xlim(-0.6, len(order) - 0.4)
    world = runs if runs is not None and "profile" in runs else None
    _style(ax, _title(title, None, world), {"shots": "real images per class", "per_class":
                                            "synthetic images per class"}.get(by, by),
           f"recipe − {baseline} (points of test accuracy)")
    long_labels = any(len(label) > 20 for label, *_ in series)  # one per row, else they overlap
    ax.legend(frameon=False, fontsize=8, ncols=1 if long_labels else min(3, len(series) + 1))
    return fig


def against_both_vanillas(runs: pd.DataFrame, recipes, where: dict | None = None,
                          title: str | None = None) -> Figure:
    """Each recipe minus vanilla (left) and minus the vanilla trained as many optimizer steps
    as the recipe's two stages (right; the store's `match_compute` runs), by shots, paired by
    seed with 95% intervals. A gain on the left that is gone on the right is the longer run's,
    not the synthetic images'."""
    where = where or {}
    fig = Figure(figsize=(11.5, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    matched = {"match_compute": True, **{k: where[k] for k in ("per_class", "template",
                                                                "guidance") if k in where}}
    for ax, baseline_where, name in ((left, BASE, "minus vanilla (its own epochs)"),
                                     (right, matched, "minus vanilla trained as many steps "
                                                      "(compute-matched)")):
        table = difference_table(runs, recipes, "shots", "vanilla", where, baseline_where)
        _differences(ax, _recipe_series(table), "shots", "vanilla", None, None, name,
                     f"no {recipes} runs pair with a vanilla run {name}")
    right.set_ylabel("")
    fig.suptitle(_title(title or "Each recipe minus vanilla, paired by seed (95% intervals)",
                        None, runs if "profile" in runs else None), fontsize=10)
    return fig


def volume_protocols(runs: pd.DataFrame, recipe: str = "bridged++", shots=4, *,
                     budget: int = PAPER_BUDGET, budget_per_class: int = PAPER_PER_CLASS,
                     ax=None, title: str | None = None) -> Figure:
    """`recipe` minus vanilla by synthetic images per class at `shots`, in the two protocols of
    a volume study: epochs fixed (a bigger set trains longer) and the synthetic stage fixed at
    `budget` steps (more images, not more training; by default the paper setting's). At
    `budget_per_class` the two are one run: its epochs make exactly `budget` steps, so the
    fixed-steps series takes that run there."""
    plain = {**BASE, "shots": shots}
    at = {**plain, "template": "single"}
    epochs = difference_table(runs, [recipe], "per_class", where=at, baseline_where=plain)
    steps = difference_table(runs, [recipe], "per_class", where={**at, "fixed_steps": budget},
                             baseline_where=plain)
    steps = pd.concat([steps, epochs[epochs["per_class"] == budget_per_class]]) \
        .sort_values("per_class", ignore_index=True)
    series = [("epochs fixed (steps grow with the set)", epochs, COLORS.get(recipe), "o"),
              (f"synthetic stage fixed at {budget} steps", steps, "tab:purple", "D")]
    name = "full pool" if str(shots) == "full" else f"{shots} shots"
    return _differences(ax, series, "per_class", "vanilla", runs, None,
                        title or f"{recipe} minus vanilla by synthetic volume, {name}",
                        f"no {recipe} runs at {name} pair with a vanilla run of the same seed")


def radar(runs: pd.DataFrame, by: str = "shots", baseline: str = "vanilla", ax=None, *,
          title: str | None = None) -> Figure:
    """The paper's "circle" plot: accuracy / baseline accuracy on each axis (`by` values).

    The baseline is the circle at exactly 1; the radial axis does not start at 0.
    """
    table = radar_table(runs, by, baseline)
    order = list(dict.fromkeys(table[by]))
    theta = np.linspace(0, 2 * np.pi, len(order), endpoint=False)
    fig, ax = _axes(ax, polar=True, size=(7.2, 5.8))
    for recipe, t in table.groupby("recipe", sort=False):
        r = t.set_index(by)["relative"].reindex(order).to_numpy(dtype=float)
        kw = dict(color=COLORS.get(recipe), lw=2.2 if recipe == baseline else 1.5)
        line, = ax.plot(np.append(theta, theta[0]), np.append(r, r[0]), label=recipe,
                        marker="o", ms=3, **kw)  # markers: a recipe missing on an axis shows
        ax.fill(theta, r, alpha=0.08, color=line.get_color())
    labels = [f"{v}-shot" if by == "shots" and v != "full" else str(v) for v in order]
    ax.set_xticks(theta, labels)
    lo, hi = np.nanmin(table["relative"]), np.nanmax(table["relative"])
    pad = max(0.02, 0.1 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title(_title(title or f"Accuracy relative to {baseline} ({baseline} = 1) per {by}",
                        table, runs), fontsize=10)
    return fig


def convergence(histories, stage: str = "real", ax=None, *, runs: pd.DataFrame | None = None,
                title: str | None = None, profile: str | None = None, **where) -> Figure:
    """Test accuracy per epoch of one stage, one line per label: {label: history}, or with
    `runs` (the store) a tidy history table drawn per recipe (`where`, e.g. shots=4, picks the
    slice); the paper: bridged-initialised models converge faster on the real data."""
    table = convergence_table(histories, stage, runs, **where)
    fig, ax = _axes(ax)
    for label, t in table.groupby("label", sort=False):
        line, = ax.plot(t["epoch"], t["mean"], marker=MARKERS.get(label, "o"), ms=4, label=label,
                        color=COLORS.get(label))
        if (t["count"] > 1).any():
            s = t["std"].fillna(0)
            ax.fill_between(t["epoch"], t["mean"] - s, t["mean"] + s, alpha=0.15,
                            color=line.get_color(), lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    world = runs if runs is not None and "profile" in runs else \
        pd.DataFrame({"profile": [profile]}) if profile else None
    _style(ax, _title(title or f"Test accuracy per epoch of the {stage!r} stage", table, world),
           f"epoch of the {stage!r} stage", "test top-1 accuracy")
    return fig


VERDICT_COLORS = dict(zip(VERDICTS, ("tab:blue", "tab:red", "#8c8c8c", "#d0d0d0")))


def forest_plot(claims: pd.DataFrame, title: str | None = None,
                profile: str | None = None) -> Figure:
    """One row per (claim, setting) of `claim_verdicts`: the paired difference with its 95%
    interval, coloured by verdict, the paper's side shaded; LEEP rows on their own axis. A
    filled star marks a row whose verdict survives Holm's correction over all rows (an open
    dot: reproduced or opposite at 5% alone, but not after the correction)."""
    parts = [claims[claims["unit"] == "points"], claims[claims["unit"] == "LEEP"]]
    parts = [p for p in parts if len(p)]
    heights = [len(p) + 1.5 for p in parts]
    fig = Figure(figsize=(12, 0.3 * sum(heights) + 1.4), layout="constrained")
    axes = fig.subplots(len(parts), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, part in zip(axes, parts):
        y = np.arange(len(part))[::-1]
        for yi, row in zip(y, part.itertuples()):
            color = VERDICT_COLORS[row.verdict]
            if math.isfinite(row.ci_low):
                ax.plot([row.ci_low, row.ci_high], [yi, yi], color=color, lw=2.2)
            held = getattr(row, "holm_verdict", row.verdict) == row.verdict
            if row.verdict in ("reproduced", "opposite") and held:
                ax.plot(row.diff, yi, "*", color=color, ms=11)
            else:
                ax.plot(row.diff, yi, "o", ms=5, color=color,
                        mfc="white" if row.verdict in ("reproduced", "opposite") else color)
        ax.axvline(0, color="black", lw=0.8)
        # a claim and its setting run to 150 characters: on one line they squeeze the axes
        # to nothing (matplotlib warns on the page); two short lines leave it its width
        ax.set_yticks(y, [textwrap.fill(f"{c} — {s}", 75) for c, s in
                          zip(part["claim"], part["setting"])], fontsize=7.5)
        for yi, row in zip(y, part.itertuples()):  # the verdict and the paper's number beside
            holm = getattr(row, "holm_verdict", row.verdict)
            after = f", {holm} after Holm" if holm != row.verdict else ""
            ax.annotate(f"{row.verdict}{after} (n={row.n}) · paper {row.paper_diff}", (1.01, yi),
                        xycoords=("axes fraction", "data"), va="center", fontsize=7.5,
                        color=VERDICT_COLORS[row.verdict] if row.n else "#8c8c8c")
        ax.set_ylim(-0.8, len(part) - 0.2)
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        unit = part["unit"].iloc[0]
        ax.set_xlabel("paired difference, method − comparison (points of test accuracy)"
                      if unit == "points" else "LEEP after the synthetic stage − before")
    keys = [Line2D([], [], marker="o", color=color, label=verdict)
            for verdict, color in VERDICT_COLORS.items()]
    keys.append(Line2D([], [], marker="*", ls="", color="#444444", ms=10,
                       label="survives Holm's correction"))
    # below every axis and its label, in a band the layout reserves (an axes-anchored legend
    # lands on the x label when the figure has one panel)
    fig.legend(handles=keys, frameon=False, fontsize=8, ncols=5, loc="outside lower left")
    world = pd.DataFrame({"profile": [profile]}) if profile else None
    fig.suptitle(_title(title or "The paper's claims: paired differences, 95% intervals",
                        None, world), fontsize=10)
    return fig


def mixing_map(runs: pd.DataFrame, ratios=SYN_PER_REAL, title: str | None = None,
               profile: str | None = None) -> Figure:
    """The mixing map: mixed − vanilla (points) over shots × real share (`ratios`, synthetic
    images per real one), each cell with its 95% interval; blue where mixing helps, red where
    it hurts."""
    table = mixing_table(runs)
    table = table[(table["n"] > 0) & table["syn_per_real"].round(2).isin(ratios)]
    if table.empty:
        raise ValueError("no mixed run pairs with a vanilla run of the same shots and seed")
    shots = sorted(table["shots"].unique(), key=lambda v: math.inf if v == "full" else v)
    ratios = sorted(table["syn_per_real"].round(2).unique())
    grid = np.full((len(shots), len(ratios)), np.nan)
    fig, ax = _axes(size=(1.6 * len(ratios) + 2.5, 0.8 * len(shots) + 1.8))
    for row in table.itertuples():
        grid[shots.index(row.shots), ratios.index(round(row.syn_per_real, 2))] = row.diff
    lim = max(1.0, float(np.nanmax(np.abs(grid))))
    for row in table.itertuples():
        i, j = shots.index(row.shots), ratios.index(round(row.syn_per_real, 2))
        half = (row.ci_high - row.ci_low) / 2 if math.isfinite(row.ci_high) else math.nan
        ax.text(j, i, f"{row.diff:+.1f}\n±{half:.1f}\n{row.per_class}/class", ha="center",
                va="center", fontsize=8, color="white" if abs(row.diff) > 0.6 * lim else "black")
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    fig.colorbar(im, ax=ax, label="mixed − vanilla (points)")
    ax.set_xticks(range(len(ratios)),
                  [f"{100 / (1 + r):.0f}% real\n({r:g} : 1)" for r in ratios], fontsize=8)
    ax.set_yticks(range(len(shots)), [shot_label(k) if k == "full" else f"{k}-shot"
                                      for k in shots])
    ax.set(xlabel="real share of the mixed training set (synthetic : real); ± the 95% interval",
           ylabel="real data")
    world = runs if "profile" in runs else pd.DataFrame({"profile": [profile]}) if profile else None
    ax.set_title(_title(title or "Where mixing helps and where it hurts", None, world),
                 fontsize=10)
    return fig


# ---------------------------------------------------------------- the report on disk
def _distinct(runs: pd.DataFrame, col: str, n: int, radar: bool = False) -> str | None:
    if col not in runs.columns:
        return f"no {col!r} column in the runs"
    if (k := study_values(runs, col).nunique()) < n:
        return f"needs at least {n} distinct values of {col!r}, found {k}"
    if radar and ("vanilla" not in set(runs["recipe"]) or runs["recipe"].nunique() < 2):
        return "needs the 'vanilla' baseline and at least one other recipe"
    return None


def plan_report(runs: pd.DataFrame, histories=None) -> dict[str, str | None]:
    """For each report item: None if it can be drawn, else why it is skipped."""
    base = next((f"no {c!r} column in the runs" for c in ("recipe", "test_acc")
                 if c not in runs.columns), "no runs" if runs.empty else None)
    needs = {"accuracy_vs_per_class": ("per_class", 2, False),
             "accuracy_vs_guidance": ("guidance", 2, False),
             "accuracy_vs_shots": ("shots", 2, False),
             "radar_shots": ("shots", 3, True), "radar_dataset": ("dataset", 3, True),
             "template_vs_dsi": ("template", 2, False)}
    plan = {name: base or _distinct(runs, *need) for name, need in needs.items()}
    frames = list(histories.values()) if isinstance(histories, dict) else \
        [] if histories is None else [histories]
    real = [h for h in frames if len(h) and h["test_acc"][h["stage"] == "real"].notna().any()]
    plan["convergence"] = (None if real else "no histories given" if not frames
                           else "no history has test accuracy in the 'real' stage")
    return plan


def _history_table(histories, runs: pd.DataFrame):
    """{run name: history} -> one tidy table with a `run` column; {label: history} whose
    labels are not run names (and a tidy table) are returned as they are."""
    if isinstance(histories, dict) and histories and "run" in runs and \
            set(histories) <= set(runs["run"]):
        return pd.concat([h.assign(run=name) for name, h in histories.items()], ignore_index=True)
    return histories


def _markdown(table: pd.DataFrame) -> str:
    rows = [table.columns, ["---"] * len(table.columns), *table.itertuples(index=False)]
    return "".join("| " + " | ".join(map(str, row)) + " |\n" for row in rows)


def report_files() -> set[str]:
    """Every file name a report may write (`bridge report` adds summary.csv)."""
    figures = [*plan_report(pd.DataFrame()), "claims_forest", "mixing_map"]
    return ({f"{f}.{ext}" for f in figures for ext in ("png", "svg", "csv")} |
            {"template_vs_dsi.csv", "template_vs_dsi.md", "claims.csv", "claims.md", "report.md",
             "summary.csv"})


def check_report_folder(out_dir, overwrite: bool = False) -> None:
    """Refuse a folder that already holds files a report would replace (an earlier report, or
    a file of yours with the same name) unless overwrite=True, which replaces only those."""
    out, ours = Path(out_dir), report_files()
    clash = sorted(p.name for p in out.iterdir() if p.name in ours) if out.is_dir() else []
    if clash and not overwrite:
        raise FileExistsError(f"{str(out)!r} already holds {', '.join(clash[:3])}"
                              f"{f' and {len(clash) - 3} more' if len(clash) > 3 else ''} that "
                              f"a report would replace; choose another --out or pass "
                              f"overwrite=True (--overwrite) to replace only the report's files")


def write_report(runs: pd.DataFrame, out_dir, histories=None, profile: str | None = None,
                 overwrite: bool = False) -> dict[str, Path]:
    """Save every figure the runs allow (PNG, SVG and the CSV behind it) and the
    template-vs-DSI table (CSV, markdown); `report.md` lists what was written and what was
    skipped and why. Returns {file name: path}. `profile` labels titles (e.g. "mini"). A folder
    holding an earlier report is refused unless overwrite=True (`check_report_folder`)."""
    out = Path(out_dir)
    check_report_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    histories = _history_table(histories, runs)
    by_run = isinstance(histories, pd.DataFrame)  # else {label: history}: drawn as given
    if profile is not None:
        runs = runs.assign(profile=profile)
    elif "profile" in runs and runs["profile"].nunique() == 1:
        profile = runs["profile"].dropna().iloc[0]
    plan = plan_report(runs, histories)
    written: dict[str, Path] = {}

    def save_csv(name: str, table: pd.DataFrame) -> None:
        written[name] = atomic_write_bytes(out / name, table.to_csv(index=False).encode())

    recipes = [r for r in RECIPE_ORDER if r in set(runs.get("recipe", ()))] or None
    hist = dict(runs=runs) if by_run else {}
    items = {  # name: () -> (the table behind the figure, the figure)
        "accuracy_vs_per_class": lambda: (curve_table(runs, "per_class"),
                                          accuracy_vs_per_class(runs)),
        "accuracy_vs_guidance": lambda: (curve_table(runs, "guidance"), accuracy_vs_guidance(runs)),
        "accuracy_vs_shots": lambda: (shots_table(runs, recipes), accuracy_vs_shots(runs, recipes)),
        "radar_shots": lambda: (radar_table(runs, "shots"), radar(runs, "shots")),
        "radar_dataset": lambda: (radar_table(runs, "dataset"), radar(runs, "dataset")),
        "convergence": lambda: (convergence_table(histories, **hist),
                                convergence(histories, profile=profile, **hist)),
    }
    for name, make in items.items():
        if plan[name]:
            continue
        try:  # the plan checks the whole table; a figure's slice of it may still lack data
            table, fig = make()
        except (KeyError, ValueError) as err:
            plan[name] = f"{type(err).__name__}: {err}"
            continue
        for ext in ("png", "svg"):
            save_figure(fig, out / f"{name}.{ext}", dpi=150)  # never through a link
            written[f"{name}.{ext}"] = out / f"{name}.{ext}"
        save_csv(f"{name}.csv", table)
    if not plan["template_vs_dsi"]:
        table = template_vs_dsi_table(runs)
        save_csv("template_vs_dsi.csv", table)
        md = _markdown(table[["template", "recipe", "shots", "mean ± std", "count"]])
        written["template_vs_dsi.md"] = atomic_write_bytes(out / "template_vs_dsi.md", md.encode())
    if by_run or histories is None:  # the paper's claims, checked against these runs
        claims = claim_verdicts(runs, histories)
        save_csv("claims.csv", claims)
        written["claims.md"] = atomic_write_bytes(out / "claims.md", _markdown(claims).encode())
        fig = forest_plot(claims, profile=profile)
        for ext in ("png", "svg"):
            save_figure(fig, out / f"claims_forest.{ext}", dpi=150)
            written[f"claims_forest.{ext}"] = out / f"claims_forest.{ext}"
    mixing = mixing_table(runs)
    if (mixing["n"] > 0).any() and mixing["syn_per_real"].round(2).isin(SYN_PER_REAL).any():
        save_csv("mixing_map.csv", mixing)
        fig = mixing_map(runs, profile=profile)
        for ext in ("png", "svg"):
            save_figure(fig, out / f"mixing_map.{ext}", dpi=150)
            written[f"mixing_map.{ext}"] = out / f"mixing_map.{ext}"
    else:
        plan["mixing_map"] = "no mixed runs paired with vanilla at a given real share"
    skipped = {k: v for k, v in plan.items() if v}
    log.info("report: wrote %d files, skipped %s", len(written), skipped or "nothing")
    index = [_title("# Report", None, runs).replace("\n", " — "), "", "## Written", ""]
    index += [f"- {name}" for name in written] + ["", "## Skipped", ""]
    index += [f"- {name}: {why}" for name, why in skipped.items()] or ["- nothing"]
    written["report.md"] = atomic_write_bytes(out / "report.md", ("\n".join(index) + "\n").encode())
    return written
