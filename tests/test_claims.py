"""The claim rules: paired intervals and verdicts, fed synthetic stores with a known effect, no
effect and the opposite effect, for every rule of claims.RULES."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bridgelib import claims, report
from bridgelib.claims import RULES, VERDICTS, claim_verdicts, paired_interval, verdict

SEEDS = range(5)
NOISE = np.array([0.004, -0.003, 0.001, -0.004, 0.002])  # mean 0: "no effect" is exactly none


def test_paired_interval_is_the_t_interval():
    d = [0.01, 0.03, -0.01, 0.02, 0.04]
    mean, low, high, n = paired_interval(d)
    half = stats.t.ppf(0.975, 4) * np.std(d, ddof=1) / math.sqrt(5)
    assert (mean, n) == (pytest.approx(0.018), 5)
    assert (low, high) == (pytest.approx(0.018 - half), pytest.approx(0.018 + half))
    assert paired_interval([0.5])[3] == 1 and math.isnan(paired_interval([0.5])[1])
    assert paired_interval([])[3] == 0 and paired_interval([np.nan, 1.0, 2.0])[3] == 2


@pytest.mark.parametrize("diffs, direction, expected", [
    ([0.03, 0.04, 0.05], +1, "reproduced"),
    ([0.03, 0.04, 0.05], -1, "opposite"),
    ([-0.03, -0.04, -0.05], -1, "reproduced"),
    ([0.03, -0.02, 0.01], +1, "within noise"),    # the interval contains 0
    ([0.03], +1, "not measured"),                  # one pair: no interval
    ([0.0001, 0.0001, 0.0001], +1, "within noise"),  # 1 test image of 10,000: noise
])
def test_verdict_follows_the_interval(diffs, direction, expected):
    assert verdict(*paired_interval(diffs), direction, n_test=10_000) == expected


def test_an_equivalence_claim_needs_the_whole_interval_inside_the_margin():
    margin = 0.02
    assert verdict(*paired_interval([0.002, -0.001, 0.001, 0.0]), 0, margin=margin) == "reproduced"
    assert verdict(*paired_interval([0.05, 0.06, 0.055]), 0, margin=margin) == "opposite"
    assert verdict(*paired_interval([0.05, -0.04, 0.01]), 0, margin=margin) == "within noise"


# ---------------------------------------------------------------- every rule on a made-up store
def _rows(where: dict, value_col: str, values, tag: str) -> list[dict]:
    """Store rows matching a rule's selector, one per training seed (x generation seed)."""
    gen_seeds = where.get("gen_seed", [None])
    rows = []
    for g in gen_seeds if isinstance(gen_seeds, list) else [gen_seeds]:
        for seed, v in zip(SEEDS, values):
            row = {**where, "gen_seed": g, "seed": seed, "n_test": 10_000,
                   "run": f"{tag}-g{g}-s{seed}", value_col: v}
            rows.append(row)
    return rows


def rule_store(rule: claims.Rule, effect: float) -> pd.DataFrame:
    """Runs of a rule's two sides: a = b + effect (+ noise that averages to 0)."""
    col_a, col_b = rule.cols or (rule.metric, rule.metric)
    b_values = 0.6 + NOISE[::-1]
    a_values = b_values + effect + NOISE
    if rule.cols:  # the same runs carry both scores
        rows = _rows(rule.a, col_a, a_values, "a")
        for row, v in zip(rows, np.tile(b_values, len(rows) // len(SEEDS))):
            row[col_b] = v
    else:
        rows = _rows(rule.a, col_a, a_values, "a") + _rows(rule.b, col_b, b_values, "b")
    store = pd.DataFrame(rows)
    for col in ("test_acc", "early_acc", "leep_after_synthetic", "leep_pretrained"):
        store[col] = store.get(col, np.nan)
    return store


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.claim} / {r.setting}")
def test_every_rule_gives_the_three_verdicts(rule):
    def one(effect):
        table = claim_verdicts(rule_store(rule, effect), rules=[rule])
        assert len(table) == 1 and table["n"].iloc[0] >= 5
        return table["verdict"].iloc[0]
    if rule.direction == 0:  # an equivalence: no effect reproduces it
        assert one(0.0) == "reproduced"
        assert one(0.06) == "opposite"
    else:
        assert one(0.03 * rule.direction) == "reproduced"
        assert one(0.0) == "within noise"
        assert one(-0.03 * rule.direction) == "opposite"


def test_claims_table_columns_and_no_review_reading():
    table = claim_verdicts(pd.DataFrame(columns=["run", "recipe", "shots", "seed", "test_acc"]))
    assert list(table.columns)[:7] == ["claim", "setting", "diff", "ci_low", "ci_high", "n",
                                       "diff_images"]
    assert set(table["verdict"]) == {"not measured"}
    assert not table["claim"].str.contains("4–8 shots|4-8 shots").any()
    assert table["source"].str.contains("quoted by").all()  # never "arXiv text"


def test_within_noise_wherever_the_interval_contains_zero():
    store = pd.read_csv(claims_store_path(), dtype={"shots": str}) if claims_store_path() else None
    if store is None:
        pytest.skip("no shipped store")
    table = claim_verdicts(store)
    scored = table[(table["n"] >= 2) & (table["claim"] != "Robust to the guidance scale")]
    contains = (scored["ci_low"] <= 0) & (scored["ci_high"] >= 0)
    assert (scored.loc[contains, "verdict"] == "within noise").all()
    assert set(table["verdict"]) <= set(VERDICTS)


def claims_store_path():
    from bridgelib.config import DATA_DIR
    path = DATA_DIR / "results" / "store" / "results.csv"
    return path if path.exists() else None


def test_forest_plot_one_row_per_claim():
    rule = next(r for r in RULES if r.claim == "Bridged++ beats vanilla")
    table = claim_verdicts(rule_store(rule, 0.03), rules=[rule, RULES[0]])
    fig = report.forest_plot(table)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert len(labels) == 2 and labels[0].startswith("Bridged++ beats vanilla")


def test_mixing_map_pairs_mixed_with_vanilla_per_cell():
    rows = []
    for seed in SEEDS:
        rows.append(dict(run=f"v{seed}", recipe="vanilla", shots="4", seed=seed, test_acc=0.6 + NOISE[seed]))
        for per_class, gain in ((4, 0.02), (96, -0.05)):
            rows.append(dict(run=f"m{per_class}-{seed}", recipe="mixed", shots="4", seed=seed,
                             per_class=per_class, template="single", guidance=3.0, gen_seed=0,
                             syn_per_real=per_class / 4, test_acc=0.6 + NOISE[seed] + gain))
    runs = pd.DataFrame(rows).assign(scratch=False, match_compute=False, fixed_steps=0)
    table = claims.mixing_table(runs)
    assert table["syn_per_real"].tolist() == [1, 24] and table["n"].tolist() == [5, 5]
    assert table["diff"].tolist() == pytest.approx([2.0, -5.0])
    assert table["real_share"].tolist() == pytest.approx([0.5, 0.04])
    fig = report.mixing_map(runs)
    assert len(fig.axes[0].texts) == 2


def test_readme_claims_table_is_the_shipped_stores():
    import importlib.util
    from bridgelib.config import REPO_ROOT
    spec = importlib.util.spec_from_file_location("readme_claims", REPO_ROOT / "tools" / "readme_claims.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    readme = (REPO_ROOT / "README.md").read_text()
    assert tool.readme_table(readme) == tool.store_table(), \
        "README's claims table is stale: run python tools/readme_claims.py"


def test_difference_text_says_within_noise_exactly_when_the_interval_contains_zero():
    clear = claims.paired_text([0.03, 0.04, 0.05])
    mean, low, high, n = paired_interval([0.03, 0.04, 0.05])
    assert clear == f"{100 * mean:+.2f} points [{100 * low:+.2f}, {100 * high:+.2f}], n = 3"
    assert claims.paired_text([0.03, -0.02, 0.01]).endswith(", within noise")
    assert claims.paired_text([-0.05, -0.04, -0.03]).startswith("-4.00 points")
    assert "within noise" not in claims.paired_text([-0.05, -0.04, -0.03])
    # under NOISE_IMAGES test images is noise whatever the interval (verdict's rule)
    assert claims.paired_text([0.0001, 0.0001001, 0.0001002], n_test=10000).endswith("within noise")
    assert claims.paired_text([0.02]) == "+2.00 points (n = 1: too few pairs for an interval)"
    # an interval from elsewhere (a bootstrap), in its own unit
    assert claims.difference_text(237.6, 228.1, 246.9, scale=1, unit="", digits=1) == \
        "+237.6 [+228.1, +246.9]"
    assert claims.difference_text(0.5, -0.1, 1.2, scale=1, unit="LEEP").endswith("within noise")


def test_forest_plot_of_every_rule_keeps_its_axes(recwarn):
    """Every rule's row (claim + setting, up to 150 characters) beside its verdict: the labels
    wrap, so constrained layout keeps the axes a width (it warned on notebook 06's page)."""
    import io
    rule = next(r for r in RULES if r.claim == "Bridged++ beats vanilla")
    fig = report.forest_plot(claim_verdicts(rule_store(rule, 0.03)))
    fig.savefig(io.BytesIO(), format="png", dpi=40)
    assert not [w for w in recwarn if "constrained_layout" in str(w.message)]
    assert fig.axes[0].get_position().width > 0.2


def test_a_4_shot_dsi_run_whose_token_saw_the_pool_is_not_scored():
    # the science rule, at the bar: a 4-shot DSI row counts only runs whose token learned on
    # their own 4 images per class; the same runs with a pool token (100/class) or an
    # unrecorded one leave the rows unmeasured instead of reading a leak as a DSI gain
    k4_rules = [r for r in RULES if r.claim.startswith(("DSI images beat", "Bridged++ on DSI"))
                and r.setting.startswith("4 shots")]
    assert len(k4_rules) == 2
    for rule in k4_rules:
        honest = rule_store(rule, 0.03)
        assert claim_verdicts(honest, rules=[rule])["verdict"].iloc[0] == "reproduced"
        dsi = honest["template"] == "dsi"
        assert (honest.loc[dsi, "token_real_per_class"] == 4).all()
        for leaked in (100, np.nan):
            store = honest.assign(token_real_per_class=honest["token_real_per_class"]
                                  .where(~dsi, leaked))
            row = claim_verdicts(store, rules=[rule]).iloc[0]
            assert (row["n"], row["verdict"]) == (0, "not measured")
