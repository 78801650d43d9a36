"""The paper's claims, checked against a results store: one row per claim with the paper's
numbers (data/paper_results.csv), what the store measured and a verdict computed from them.

Every verdict comes from a stated rule on means over seeds (the `rule` column); none is typed
in. The store's world (the mini Fashion-MNIST target, a tiny generator) is not the paper's (ResNet-18 on ten
photo datasets, Stable Diffusion), so a verdict says whether the same *direction* shows up here,
not whether the paper's numbers do. Each comparison is made on one slice of the store, holding
the columns it does not study fixed (`report.hold_fixed`); the `measured` text names the slice.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bridgelib.report import (_values, aggregate, histories_by_recipe, hold_fixed,
                              normalise_runs, paper_results)

VERDICTS = ("reproduced", "partly", "not reproduced", "not measured")
COLUMNS = ["claim", "paper", "measured", "verdict", "rule"]
BRIDGED = ("bridged", "bridged-reinit", "bridged++")
EARLY_EPOCHS = 3          # "converges faster": mean test accuracy over the first epochs
GUIDANCE_POINTS = 0.02    # "robust to guidance": spread of means at most 2 points...
GUIDANCE_NOISE = 2.0      # ...or twice the mean seed std, whichever is larger


def claim_verdicts(store: pd.DataFrame, histories: pd.DataFrame | None = None,
                   paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim: claim, paper, measured, verdict (one of VERDICTS), rule.

    `store`: the results store (experiments.read_store); `histories`: the tidy history table
    (experiments.collect_histories), needed for the convergence claim only.
    """
    store = normalise_runs(store)
    store = store.assign(**{c: np.nan for c in ("shots", "volume", "guidance", "template")
                            if c not in store})  # a study not run is "not measured"
    p = (paper if paper is not None else paper_results()).set_index("claim_id")["value"]
    checks = [_mixed_below_vanilla, _bridged_pp_above_vanilla, _volume_keeps_helping,
              _robust_to_guidance, _dsi_above_template, _gains_peak_at_few_shots,
              lambda s, p: _faster_convergence(s, p, histories), _leep_higher]
    return pd.DataFrame([check(store, p) for check in checks], columns=COLUMNS)


# ---------------------------------------------------------------- the claims
def _mixed_below_vanilla(store, p):
    paper = (f"mixed {p['mixed-gap-min']:g}–{p['mixed-gap-max']:g} points below vanilla on all "
             f"ten datasets")
    return _versus(store, "Mixed transfer is below vanilla", paper, "mixed", "vanilla", below=True)


def _bridged_pp_above_vanilla(store, p):
    paper = (f"above vanilla on {p['bridgedpp-above-vanilla']:g} of 10 datasets, e.g. Aircraft "
             f"{p['T1-aircraft-vanilla']:g} → {p['T1-aircraft-bridgedpp']:g}, Cars "
             f"{p['T1-cars-vanilla']:g} → {p['T1-cars-bridgedpp']:g}")
    return _versus(store, "Bridged++ beats vanilla", paper, "bridged++", "vanilla")


def _volume_keeps_helping(store, p):
    claim = "More synthetic images per class keep helping"
    paper = (f"accuracy rises from {p['volume-range-low']:g} to {p['volume-range-high']:g} "
             f"images/class, not saturated (Aircraft, Cars, Food-101)")
    rule = ("bridged++: reproduced if the largest volume beats the smallest and the last step "
            "still gains; partly if only the first holds")
    means, at, _ = _means(store, "volume", recipe=["bridged++"])
    curve = means.get("bridged++", pd.Series(dtype=float))
    if len(curve) < 2:
        return _unmeasured(claim, paper, rule, "fewer than 2 volumes of bridged++")
    steps = " → ".join(f"{m:.3f} at {v:g}" for v, m in curve.items())
    last = curve.iloc[-1] - curve.iloc[-2]
    measured = f"bridged++{_slice_text(at)}: {steps}/class; last step {_pts(last)}"
    up = curve.iloc[-1] > curve.iloc[0]
    verdict = "reproduced" if up and last > 0 else "partly" if up else "not reproduced"
    return [claim, paper, measured, verdict, rule]


def _robust_to_guidance(store, p):
    claim = "Robust to the guidance scale"
    paper = "results robust to the guidance scale (values not given)"
    rule = (f"bridged++: reproduced if the spread of means over guidance is at most "
            f"max({GUIDANCE_POINTS * 100:g} points, {GUIDANCE_NOISE:g} × mean seed std)")
    means, at, table = _means(store, "guidance", recipe=["bridged++"])
    curve = means.get("bridged++", pd.Series(dtype=float))
    if len(curve) < 2:
        return _unmeasured(claim, paper, rule, "fewer than 2 guidance scales of bridged++")
    spread = curve.max() - curve.min()
    seeded = table["std"].notna().any()
    noise = float(table["std"].mean()) if seeded else 0.0  # one seed: the 2 points decide
    scales = ", ".join(f"{g:g}" for g in curve.index)
    measured = (f"bridged++{_slice_text(at)} at guidance {scales}: spread {spread * 100:.1f} "
                f"points " + (f"(mean seed std {noise * 100:.1f})" if seeded else "(one seed)"))
    ok = spread <= max(GUIDANCE_POINTS, GUIDANCE_NOISE * noise)
    return [claim, paper, measured, "reproduced" if ok else "not reproduced", rule]


def _dsi_above_template(store, p):
    claim = "DSI images beat the single template"
    gains = [f"{d} +{p[f'T1-{k}-bridgedpp-dsi'] - p[f'T1-{k}-bridgedpp']:.1f}"
             for d, k in (("Aircraft", "aircraft"), ("Cars", "cars"), ("DTD", "dtd"),
                          ("Food-101", "food"), ("SUN397", "sun"))]
    paper = "bridged++ with DSI above single template: " + ", ".join(gains) + " points"
    store = store.assign(template=store["template"].astype(object).fillna("none"))
    return _versus(store, claim, paper, "dsi", "single", group="template", recipe=["bridged++"],
                   who="bridged++ ")


def _gains_peak_at_few_shots(store, p):
    claim = "Gains are largest at 4–8 shots"
    lo, hi = p["fewshot-peak-shots-min"], p["fewshot-peak-shots-max"]
    paper = (f"largest few-shot gains at {lo:g}–{hi:g} shots; up to "
             f"{p['fewshot-gain-cars-4shot']:g}% on 4-shot Cars")
    rule = f"reproduced if bridged++ − vanilla (points) is largest at {lo:g} to {hi:g} shots"
    means, at, _ = _means(store, "shots", recipe=["bridged++", "vanilla"])
    if not {"bridged++", "vanilla"} <= set(means):
        return _unmeasured(claim, paper, rule, "needs bridged++ and vanilla runs")
    gain = (means["bridged++"] - means["vanilla"].reindex(means["bridged++"].index)).dropna()
    if len(gain) < 3:
        return _unmeasured(claim, paper, rule, "fewer than 3 shot settings with both recipes")
    best = gain.idxmax()
    measured = (f"bridged++ − vanilla{_slice_text(at)}: "
                + ", ".join(f"{_shot(k)} {_pts(g)}" for k, g in gain.items())
                + f"; largest at {_shot(best)}")
    ok = best != "full" and lo <= best <= hi
    return [claim, paper, measured, "reproduced" if ok else "not reproduced", rule]


def _faster_convergence(store, p, histories):
    claim = "Bridged models converge faster on the real data"
    paper = "bridged-initialised models converge faster on the real data (no numbers in docs/paper.md)"
    rule = (f"mean test accuracy over the first {EARLY_EPOCHS} epochs of the real stage: every "
            f"bridged recipe above vanilla → reproduced; some → partly")
    if histories is None or histories.empty:
        return _unmeasured(claim, paper, rule, "no histories")
    groups, at = histories_by_recipe(histories, store)
    early = {}
    for recipe, h in groups.items():
        real = h[(h["stage"] == "real") & h["test_acc"].notna()]
        first = sorted(real["epoch"].unique())[:EARLY_EPOCHS]
        if first:
            early[recipe] = real[real["epoch"].isin(first)]["test_acc"].mean()
    bridged = {r: a for r, a in early.items() if r in BRIDGED}
    if "vanilla" not in early or not bridged:
        return _unmeasured(claim, paper, rule, "needs histories of vanilla and a bridged recipe")
    measured = (f"first {EARLY_EPOCHS} real-stage epochs{_slice_text(at)}: "
                + ", ".join(f"{r} {a:.3f}" for r, a in early.items()))
    return [claim, paper, measured, _by_sign(pd.Series(bridged) - early["vanilla"]), rule]


def _leep_higher(store, p):
    claim = "LEEP is higher after the synthetic stage"
    paper = (f"Aircraft: {p['leep-aircraft-pretrained']:.2f} (ImageNet model) → "
             f"{p['leep-aircraft-after-synthetic']:.2f} after synthetic fine-tuning; higher on "
             f"{p['leep-higher-all']:g} of 10 datasets")
    rule = "per run with both scores: all higher → reproduced; most → partly"
    cols = ["leep_pretrained", "leep_after_synthetic"]
    runs = store.dropna(subset=cols) if set(cols) <= set(store) else store.iloc[:0]
    if runs.empty:
        return _unmeasured(claim, paper, rule, "no run has both LEEP scores")
    higher = runs[cols[1]] > runs[cols[0]]
    measured = (f"{runs[cols[0]].mean():.2f} → {runs[cols[1]].mean():.2f} (mean of "
                f"{len(runs)} runs); higher in {int(higher.sum())} of {len(runs)}")
    verdict = ("reproduced" if higher.all() else "partly" if higher.mean() > 0.5
               else "not reproduced")
    return [claim, paper, measured, verdict, rule]


# ---------------------------------------------------------------- helpers
def _means(store, by: str, group: str = "recipe", **where):
    """({group value: mean accuracy per `by`}, the slice, the aggregate table) for the runs
    matching `where` ({column: allowed values}), other study columns held fixed."""
    runs = store
    for col, allowed in where.items():
        runs = runs[runs[col].isin(allowed)]
    if runs.empty or by not in runs:
        return {}, {}, pd.DataFrame(columns=[group, by, "mean", "std", "count"])
    runs, at = hold_fixed(runs.assign(**{by: _values(runs, by)}), (by, group))
    table = aggregate(runs, [group, by])
    means = {g: t.set_index(by)["mean"] for g, t in table.groupby(group, sort=False)}
    return means, at, table


def _versus(store, claim, paper, a, b, below=False, group="recipe", who="", **where):
    """`a` minus `b` at each shot setting both were run at; signs decide the verdict."""
    direction = "below" if below else "above"
    rule = f"{a} {direction} {b} at every shot setting compared → reproduced; at some → partly"
    where = where or {"recipe": [a, b]}
    means, at, _ = _means(store, "shots", group=group, **where)
    if a not in means or b not in means:
        return _unmeasured(claim, paper, rule, f"needs {who}{a} and {b} runs")
    diff = (means[a] - means[b].reindex(means[a].index)).dropna()
    if diff.empty:
        return _unmeasured(claim, paper, rule, f"{a} and {b} share no shot setting")
    measured = (f"{who}{a} − {b}{_slice_text(at)}: "
                + ", ".join(f"{_pts(d)} at {_shot(k)}" for k, d in diff.items()))
    return [claim, paper, measured, _by_sign(-diff if below else diff), rule]


def _by_sign(diff: pd.Series) -> str:
    """All positive: reproduced; some: partly; none: not reproduced."""
    if diff.empty:
        return "not measured"
    return "reproduced" if (diff > 0).all() else "partly" if (diff > 0).any() else "not reproduced"


def _unmeasured(claim, paper, rule, why):
    return [claim, paper, f"not measured: {why}", "not measured", rule]


def _shot(k) -> str:
    return "full data" if k == "full" else f"{k}-shot"


def _pts(d: float) -> str:
    return f"{d * 100:+.1f} points"


def _slice_text(at: dict) -> str:
    names = {"volume": "synthetic/class", "guidance": "guidance", "shots": "shots",
             "template": "template", "dataset": "dataset", "scratch": "scratch"}
    parts = [f"{names.get(k[3:], k[3:])}={v:g}" if isinstance(v, float)
             else f"{names.get(k[3:], k[3:])}={v}" for k, v in at.items() if k[3:] != "scratch"]
    return f" ({', '.join(parts)})" if parts else ""
