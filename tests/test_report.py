"""The report's figures, tables and files, from a small synthetic results store."""
import math
import zlib

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from bridgelib import report
from bridgelib.store import (aggregate, convergence_table, curve_table, histories_by_recipe,
                             hold_fixed, radar_table, template_vs_dsi_table)

SHOTS = (1, 2, 4, 8, 16, "full")
BONUS = {"vanilla": 0.0, "mixed": -0.05, "bridged++": 0.06}
PEAK = {4: 0.03, 8: 0.03}  # bridged++'s extra gain: largest at 4-8 shots, as the paper says


def accuracy(recipe, shots, per_class, guidance, template, dataset, seed):
    """A made-up but monotone accuracy: more shots, more synthetic data, DSI all help."""
    k = 32 if shots == "full" else shots
    acc = 0.45 + 0.07 * math.log2(k) + BONUS[recipe] + {"digits": 0, "letters": -0.03, "shapes": 0.02}[dataset]
    if recipe != "vanilla":
        acc += 0.02 * math.log2(per_class / 1000) - 0.004 * abs(guidance - 3.0)
        acc += 0.01 * (template == "dsi") + (PEAK.get(shots, 0) if recipe == "bridged++" else 0)
    key = repr((recipe, shots, per_class, guidance, template, dataset, seed)).encode()
    noise = np.random.default_rng(zlib.crc32(key)).normal(0, 0.005)
    return float(np.clip(acc + noise, 0, 1))


def make_store() -> pd.DataFrame:
    """Five studies around one default (4-shot, 1000/class, guidance 3, single template,
    digits), in the store's columns; the guidance study is at 500/class, not the default."""
    cells = set()
    for recipe in BONUS:
        for k in SHOTS:
            cells.add((recipe, k, 1000, 3.0, "single", "digits"))
        for ds in ("letters", "shapes"):
            cells.add((recipe, 4, 1000, 3.0, "single", ds))
        if recipe != "vanilla":
            cells |= {(recipe, 4, v, 3.0, "single", "digits") for v in (250, 500, 2000)}
            cells |= {(recipe, 4, 500, g, "single", "digits") for g in (1.5, 7.5)}
            cells |= {(recipe, k, 1000, 3.0, "dsi", "digits") for k in (4, "full")}
    rows = []
    for recipe, k, vol, g, tpl, ds in sorted(cells, key=str):
        synthetic = recipe != "vanilla"
        if not synthetic and (vol, g, tpl) != (1000, 3.0, "single"):
            continue
        for seed in range(3):
            data = f"-{tpl}-g{g:g}-n{vol}" if synthetic else ""
            rows.append({"run": f"{recipe}{data}-k{k}-s{seed}-{ds}", "recipe": recipe, "shots": k,
                         "seed": seed, "per_class": vol if synthetic else pd.NA,
                         "guidance": g if synthetic else np.nan,
                         "template": tpl if synthetic else None, "scratch": False,
                         "profile": "mini", "dataset": ds,
                         "test_acc": accuracy(recipe, k, vol, g, tpl, ds, seed),
                         "leep_pretrained": -1.5 + 0.01 * seed,
                         "leep_after_synthetic": -0.5 + 0.01 * seed if synthetic else np.nan})
    store = pd.DataFrame(rows)
    return store.assign(per_class=store["per_class"].astype("Int64"))


@pytest.fixture(scope="module")
def store():
    return make_store()


@pytest.fixture(scope="module")
def histories():
    def hist(final, seeds=1):
        rows = [{"stage": "synthetic", "epoch": e, "test_acc": 0.1, "seed": s}
                for s in range(seeds) for e in range(3)]
        rows += [{"stage": "real", "epoch": e, "test_acc": final * (1 - 0.5 ** (e + 1)) + 0.01 * s,
                  "seed": s} for s in range(seeds) for e in range(5)]
        return pd.DataFrame(rows)
    return {"vanilla": hist(0.8), "bridged": hist(0.85), "bridged++": hist(0.9, seeds=3)}


def run_history(run: str, recipe: str) -> pd.DataFrame:
    """A run's history.csv: bridged++ climbs faster on the real stage than vanilla."""
    rate = 0.2 if recipe == "bridged++" else 0.6
    rows = [{"stage": "synthetic", "epoch": e, "test_acc": 0.3} for e in (1, 2)] * (recipe != "vanilla")
    rows += [{"stage": "real", "epoch": e, "test_acc": 0.9 * (1 - rate ** e)} for e in range(1, 7)]
    return pd.DataFrame(rows).assign(run=run)


@pytest.fixture(scope="module")
def history_table(store):
    """The tidy history table of every run in the store (a `run` column)."""
    return pd.concat([run_history(r, recipe) for r, recipe in zip(store.run, store.recipe)],
                     ignore_index=True)


def errorbars(fig):
    return [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]


def test_aggregate_mean_std_count_in_paper_order():
    runs = pd.DataFrame({"recipe": ["bridged++", "vanilla"] * 3 + ["vanilla"],
                         "shots": ["full", "4", 4, "full", 4, 4, None],
                         "test_acc": [0.9, 0.5, 0.8, 0.6, 0.7, 0.7, 0.95]})
    t = aggregate(runs, ["recipe", "shots"])
    assert list(zip(t["recipe"], t["shots"])) == [("vanilla", 4), ("vanilla", "full"),
                                                 ("bridged++", 4), ("bridged++", "full")]
    assert t["count"].tolist() == [2, 2, 2, 1]  # "4" and 4 are one group, None is "full"
    assert t["mean"].tolist() == pytest.approx([0.6, 0.775, 0.75, 0.9])
    assert t["std"].iloc[0] == pytest.approx(math.sqrt(0.02)) and math.isnan(t["std"].iloc[3])
    with pytest.raises(KeyError, match="guidance"):
        aggregate(runs, "guidance")


def test_accuracy_vs_per_class_one_errorbar_line_per_recipe(store):
    fig = report.accuracy_vs_per_class(store)
    assert isinstance(fig, Figure)
    bars = errorbars(fig)
    assert len(bars) == 2  # mixed and bridged++; vanilla is a reference line
    for bar in bars:
        line, _, (segments,) = bar
        assert list(line.get_xdata()) == [250, 500, 1000, 2000]
        assert len(segments.get_segments()) == 4  # one error bar per x value
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["vanilla (reference)", "mixed", "bridged++"]
    assert "synthetic images per class" in ax.get_xlabel() and "4 shots" in ax.get_title()


def test_per_class_curve_holds_other_studies_fixed(store):
    table = curve_table(store, "per_class")
    assert set(table["at_shots"]) == {4} and set(table["at_dataset"]) == {"digits"}
    assert set(table["at_guidance"]) == {3.0} and set(table["at_template"]) == {"single"}
    row = table[(table.recipe == "bridged++") & (table.per_class == 500)].iloc[0]
    sel = store[(store.recipe == "bridged++") & (store.per_class == 500) & (store.guidance == 3)]
    assert row["mean"] == pytest.approx(sel.test_acc.mean()) and row["count"] == 3
    vanilla = table[table.recipe == "vanilla"].iloc[0]
    sel = store[(store.recipe == "vanilla") & (store.shots == 4) & (store.dataset == "digits")]
    assert math.isnan(vanilla["per_class"])
    assert vanilla["mean"] == pytest.approx(sel.test_acc.mean())


def test_a_curve_holds_the_slice_where_its_study_was_run(store):
    """The guidance study is at 500/class: most runs are at 1000/class, but only 500/class
    has more than one guidance scale, so that is the slice the figure holds."""
    table = curve_table(store, "guidance")
    assert set(table["at_per_class"]) == {500}
    runs, at = hold_fixed(store, ("guidance",), rows=store.guidance.notna())
    assert at["at_per_class"] == 500 and at["at_shots"] == 4
    assert set(runs.dropna(subset=["guidance"]).guidance) == {1.5, 3.0, 7.5}


def test_accuracy_vs_guidance(store):
    fig = report.accuracy_vs_guidance(store)
    bars = errorbars(fig)
    assert len(bars) == 2
    assert all(list(b[0].get_xdata()) == [1.5, 3.0, 7.5] for b in bars)
    assert "guidance" in fig.axes[0].get_xlabel()
    assert "500 synthetic/class" in fig.axes[0].get_title()
    assert len(errorbars(report.accuracy_vs_guidance(store, recipes=["vanilla", "bridged++"]))) == 1


def test_accuracy_vs_shots_orders_full_last(store):
    shuffled = store.sample(frac=1, random_state=0).assign(shots=lambda d: d.shots.astype(str))
    fig = report.accuracy_vs_shots(shuffled)
    bars = errorbars(fig)
    assert len(bars) == 2  # default recipes: vanilla and bridged++
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["1", "2", "4", "8", "16", "full"]
    assert all(len(b[0].get_xdata()) == 6 for b in bars)
    fig = report.accuracy_vs_shots(store, recipes=("vanilla", "mixed", "bridged++"))
    assert len(errorbars(fig)) == 3


def test_radar_normalises_baseline_to_one(store):
    fig = report.radar(store, by="shots")
    ax = fig.axes[0]
    assert ax.name == "polar"
    assert len(ax.lines) == 3 and len(ax.patches) == 3  # one closed, filled polygon per recipe
    lines = {line.get_label(): line for line in ax.lines}
    assert np.all(lines["vanilla"].get_ydata() == 1.0)
    assert len(lines["bridged++"].get_ydata()) == len(SHOTS) + 1  # closed
    assert np.all(lines["bridged++"].get_ydata() > 1) and np.all(lines["mixed"].get_ydata() < 1)
    fig = report.radar(store, by="dataset")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["digits", "letters", "shapes"]
    table = radar_table(store, by="dataset")
    assert (table[table.recipe == "vanilla"]["relative"] == 1.0).all()


def test_convergence_one_line_per_label_real_stage_only(histories):
    fig = report.convergence(histories)
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.lines] == ["vanilla", "bridged", "bridged++"]
    assert all(list(l.get_xdata()) == [0, 1, 2, 3, 4] for l in ax.lines)
    assert len(ax.collections) == 1  # a std band only where several seeds exist
    table = convergence_table(histories)
    first = table[(table.label == "bridged++") & (table.epoch == 0)].iloc[0]
    assert first["mean"] == pytest.approx(0.45 + 0.01) and first["count"] == 3


def test_convergence_from_the_store_one_line_per_recipe(store, history_table):
    fig = report.convergence(history_table, runs=store, shots=16)
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.lines] == ["vanilla", "mixed", "bridged++"]
    assert "16 shots" in ax.get_title() and "mini world" in ax.get_title()
    table = convergence_table(history_table, runs=store, shots=16)
    assert set(table["count"]) == {3}  # three seeds per recipe and epoch
    first = table[table.epoch == 1].set_index("label")["mean"]
    assert first["bridged++"] == pytest.approx(0.9 * 0.8) and first["vanilla"] == pytest.approx(0.9 * 0.4)
    groups, at = histories_by_recipe(history_table, store, recipes=["bridged++"], shots=16)
    assert list(groups) == ["bridged++"] and at["at_shots"] == 16
    assert groups["bridged++"]["run"].nunique() == 3


def test_template_vs_dsi_table_matches_hand_computation(store):
    runs = pd.DataFrame({"recipe": ["bridged++"] * 5 + ["vanilla"] * 2,
                         "template": ["single", "single", "dsi", "dsi", "dsi", None, None],
                         "shots": [4] * 7, "test_acc": [0.80, 0.90, 0.91, 0.92, 0.93, 0.7, 0.72]})
    t = template_vs_dsi_table(runs)
    assert list(t["template"]) == ["none", "single", "dsi"]
    assert list(t["mean ± std"]) == ["0.710 ± 0.014", "0.850 ± 0.071", "0.920 ± 0.010"]
    assert t["mean"].tolist() == pytest.approx([0.71, 0.85, 0.92])
    t = template_vs_dsi_table(store)
    row = t[(t.template == "dsi") & (t.recipe == "bridged++") & (t.shots == "full")].iloc[0]
    sel = store[(store.template == "dsi") & (store.recipe == "bridged++") & (store.shots == "full")]
    assert row["mean"] == pytest.approx(sel.test_acc.mean())
    assert row["std"] == pytest.approx(sel.test_acc.std())


def test_write_report_writes_every_figure(store, histories, tmp_path):
    written = report.write_report(store, tmp_path, histories=histories, profile="mini")
    figures = ["accuracy_vs_per_class", "accuracy_vs_guidance", "accuracy_vs_shots",
               "radar_shots", "radar_dataset", "convergence"]
    for name in figures:
        for ext in ("png", "svg", "csv"):
            assert written[f"{name}.{ext}"].stat().st_size > 0
    assert written["accuracy_vs_per_class.png"].read_bytes()[:4] == b"\x89PNG"
    shots = pd.read_csv(written["accuracy_vs_shots.csv"])
    assert {"recipe", "shots", "mean", "std", "count"} <= set(shots.columns)
    md = written["template_vs_dsi.md"].read_text().splitlines()
    assert md[0] == "| template | recipe | shots | mean ± std | count |" and len(md) == 2 + 22
    assert pd.read_csv(written["template_vs_dsi.csv"])["template"].tolist()[0] == "none"
    assert "mini world" in written["report.md"].read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_report_groups_a_tidy_history_table_per_recipe(store, history_table, tmp_path):
    written = report.write_report(store, tmp_path, histories=history_table)
    table = pd.read_csv(written["convergence.csv"])
    assert set(table["label"]) == {"vanilla", "mixed", "bridged++"}
    claims = pd.read_csv(written["claims.csv"])
    assert {"claim", "setting", "diff", "ci_low", "ci_high", "n", "verdict"} <= set(claims.columns)
    assert written["claims.md"].read_text().startswith("| claim | setting |")
    assert "claims_forest.png" in written and written["claims_forest.png"].stat().st_size > 0


def test_write_report_skips_what_the_runs_cannot_show(store, tmp_path):
    runs = store[store.dataset == "digits"].drop(columns=["guidance", "template"])
    plan = report.plan_report(runs)
    assert "'guidance'" in plan["accuracy_vs_guidance"] and plan["convergence"]
    assert "dataset" in plan["radar_dataset"] and plan["accuracy_vs_per_class"] is None
    written = report.write_report(runs, tmp_path)
    assert "accuracy_vs_per_class.svg" in written and "accuracy_vs_shots.csv" in written
    for name in ("accuracy_vs_guidance", "radar_dataset", "convergence", "template_vs_dsi"):
        assert not any(k.startswith(name) for k in written)
        assert not (tmp_path / f"{name}.csv").exists()
    text = (tmp_path / "report.md").read_text()
    assert "accuracy_vs_guidance: no 'guidance' column" in text


def test_paper_results_has_the_papers_numbers():
    paper = report.paper_results()
    assert list(paper.columns) == ["claim_id", "dataset", "architecture", "setting", "recipe",
                                   "metric", "value", "unit", "source", "note"]
    assert paper["claim_id"].is_unique
    leep = paper[paper.metric == "leep"].set_index("recipe")["value"]
    assert sorted(leep) == [-4.30, -3.41]
    top1 = paper[(paper.metric == "top1") & (paper.setting == "full")]
    got = top1.set_index(["dataset", "recipe"])["value"]
    assert got[("Aircraft", "vanilla")] == 79.7 and got[("Aircraft", "bridged++")] == 85.2
    assert got[("Cars", "vanilla")] == 83.8 and got[("Cars", "bridged++")] == 91.6
    assert got[("SUN397", "bridged++ with DSI")] == 63.4
    std = paper[(paper.metric == "top1_std") & (paper.dataset == "DTD")]
    assert std["value"].tolist() == [0.3, 0.3]
    gaps = paper[paper.recipe == "mixed"].set_index("metric")["value"]
    assert gaps["gap_points_min"] == 6 and gaps["gap_points_max"] == 10
    assert sorted(paper[paper.metric == "avg_gain_percent"]["value"]) == [9, 12, 13]


def test_a_second_report_into_the_same_folder_is_refused_unless_overwrite(store, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    report.write_report(store, tmp_path)
    before = (tmp_path / "report.md").read_bytes()
    with pytest.raises(FileExistsError, match=r"already holds .*--overwrite"):
        report.write_report(store, tmp_path)
    assert (tmp_path / "report.md").read_bytes() == before  # refused before writing anything
    report.write_report(store, tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the report's own files replaced


def test_a_file_of_yours_named_like_a_report_file_is_not_replaced(store, tmp_path):
    (tmp_path / "summary.csv").write_text("my numbers")
    with pytest.raises(FileExistsError, match="summary.csv"):
        report.write_report(store, tmp_path)
    assert (tmp_path / "summary.csv").read_text() == "my numbers"


def test_titles_say_held_columns_in_words_and_differences_keep_shots_in_order():
    runs = pd.DataFrame([{"run": f"{r}-k{k}-s{s}", "recipe": r, "shots": k, "seed": s,
                          "test_acc": 0.5 + (0.02 if r == "bridged++" else 0) + 0.001 * s}
                         for r in ("vanilla", "bridged++") for k in ("full", 16, 2, 4)
                         for s in range(3)])
    table = report.difference_table(runs, ["bridged++"])
    assert list(table["shots"]) == [2, 4, 16, "full"]
    assert table["diff"].round(6).eq(2.0).all() and (table["n"] == 3).all()
    fig = report.recipe_differences(runs, ["bridged++"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2-shot", "4-shot", "16-shot", "full pool"]
    table = pd.DataFrame({"at_fixed_steps": [0], "at_match_compute": [False], "at_scratch": [False],
                          "at_per_class": [200.0], "at_gen_seed": [0.0]})
    title = report._title("T", table)
    assert "=" not in title and "fixed_steps" not in title and "200 synthetic/class" in title
    with pytest.raises(ValueError, match="no \\['mixed'\\] run pairs"):
        report.recipe_differences(runs, ["mixed"])


def test_accuracy_vs_shots_draws_scratch_apart_and_live_crosses(store):
    both = pd.concat([store.assign(scratch=False),
                      store.assign(scratch=True, test_acc=store["test_acc"] - 0.1,
                                   run=store["run"] + "-scratch")], ignore_index=True)
    live = pd.DataFrame({"recipe": ["vanilla", "vanilla"], "shots": [4, "full"],
                         "scratch": [False, True], "test_acc": [0.7, 0.5]})
    fig = report.accuracy_vs_shots(both, recipes=["vanilla"], scratch=True, live=live)
    bars = errorbars(fig)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert len(bars) == 2 and {"vanilla", "vanilla, from scratch"} <= set(labels)
    pretrained, scratch = (b[0].get_ydata() for b in bars)
    assert (pretrained > scratch).all()  # the scratch line is the one 0.1 below
    crosses = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert sorted(tuple(c.get_offsets()[0]) for c in crosses) == [(ticks.index("4"), 0.7),
                                                                  (ticks.index("full"), 0.5)]
    assert len(errorbars(report.accuracy_vs_shots(both, recipes=["vanilla"]))) == 1  # held


def _plotted_points(ax) -> list[list[float]]:
    """The y values of each errorbar series of an axes, in drawing order."""
    return [[round(float(y), 6) for y in c.lines[0].get_ydata()] for c in ax.containers]


def test_against_both_vanillas_pairs_each_side_with_its_own_vanilla():
    # bridged++ is 2 points above plain vanilla and 1 point below the compute-matched vanilla:
    # the left panel must show +2, the right -1 (a mix-up of the baselines shows +0.5 on both)
    base = {"per_class": 1500, "template": "single", "fixed_steps": 0, "scratch": False}
    rows = []
    for k in (4, "full"):
        for s in range(4):
            rows += [{**base, "run": f"v-{k}-{s}", "recipe": "vanilla", "shots": k, "seed": s,
                      "match_compute": False, "per_class": float("nan"),
                      "template": None, "test_acc": 0.50 + 0.01 * s},
                     {**base, "run": f"m-{k}-{s}", "recipe": "vanilla", "shots": k, "seed": s,
                      "match_compute": True, "test_acc": 0.53 + 0.01 * s},
                     {**base, "run": f"b-{k}-{s}", "recipe": "bridged++", "shots": k, "seed": s,
                      "match_compute": False, "test_acc": 0.52 + 0.01 * s}]
    fig = report.against_both_vanillas(pd.DataFrame(rows), ["bridged++"],
                                       where={"per_class": 1500, "fixed_steps": 0})
    left, right = fig.axes
    assert _plotted_points(left) == [[2.0, 2.0]] and _plotted_points(right) == [[-1.0, -1.0]]
    assert [t.get_text() for t in left.get_xticklabels()] == ["4-shot", "full pool"]


def test_volume_protocols_takes_the_budget_volume_from_the_epochs_run():
    # epochs fixed: +1 point per 1,000 images; steps fixed: +3 at 500 and +4 at 3,000; at 1,500
    # (whose epochs are the budget) both protocols are the one epochs run
    rows = [{"run": f"v-{s}", "recipe": "vanilla", "shots": 4, "seed": s, "fixed_steps": 0,
             "match_compute": False, "scratch": False, "test_acc": 0.5} for s in range(3)]
    for n, fixed, gain in ((500, 0, 0.5), (1500, 0, 1.5), (3000, 0, 3.0), (500, 940, 3.0),
                           (3000, 940, 4.0)):
        rows += [{"run": f"b-{n}-{fixed}-{s}", "recipe": "bridged++", "shots": 4, "seed": s,
                  "per_class": n, "template": "single", "fixed_steps": fixed,
                  "match_compute": False, "scratch": False, "test_acc": 0.5 + gain / 100}
                 for s in range(3)]
    runs = pd.DataFrame(rows)
    fig = report.volume_protocols(runs, shots=4, budget=940, budget_per_class=1500)
    ax = fig.axes[0]
    assert _plotted_points(ax) == [[0.5, 1.5, 3.0], [3.0, 1.5, 4.0]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["500/class", "1500/class", "3000/class"]
    with pytest.raises(ValueError, match="no bridged\\+\\+ runs at full pool"):
        report.volume_protocols(runs, shots="full", budget=940, budget_per_class=1500)
