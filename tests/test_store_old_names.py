"""Stores and run folders written before issue 26 named synthetic images per class `volume`
(results.csv) and `synthetic_per_class` (metrics.json); they load with today's `per_class`
(`store.OLD_NAMES`), as they are on disk, and the claims select them by it."""
import json

import pandas as pd

from bridgelib.claims import select
from bridgelib.store import collect_runs, load_runs, read_store, tidy_runs

OLD_CSV = """run,recipe,shots,seed,volume,guidance,template,gen_seed,test_acc
vanilla-k4-s0,vanilla,4,0,,,,,0.61
bridged++-single-g3-n200-k4-s0,bridged++,4,0,200,3.0,single,0,0.64
bridged++-single-g3-n400-k4-s0,bridged++,4,0,400,3.0,single,0,0.66
"""


def old_run(root, name, recipe, per_class, **extra):
    """A run folder as the old code wrote it: metrics.json with `synthetic_per_class`."""
    (root / name).mkdir(parents=True)
    metrics = {"recipe": recipe, "shots": 4, "seed": 0, "test_acc": 0.6, "pretrained": True,
               "train_images": 40, "synthetic_images": per_class * 10,
               "synthetic_per_class": per_class, **extra}
    (root / name / "metrics.json").write_text(json.dumps(metrics))


def test_an_old_results_csv_reads_with_per_class(tmp_path):
    (tmp_path / "results.csv").write_text(OLD_CSV)
    store = read_store(tmp_path)
    assert "volume" not in store and str(store["per_class"].dtype) == "Int64"
    assert store["per_class"].isna().tolist() == [True, False, False]
    assert select(store, {"recipe": "bridged++", "per_class": 400})["test_acc"].tolist() == [0.66]
    assert load_runs(tmp_path)[0]["per_class"].tolist()[1:] == [200, 400]
    assert (tmp_path / "results.csv").read_text() == OLD_CSV  # read, never rewritten


def test_old_run_folders_collect_with_per_class(tmp_path):
    old_run(tmp_path, "vanilla-k4-s0", "vanilla", 0)
    old_run(tmp_path, "bridged++-single-g3-n200-k4-s0", "bridged++", 200, template="single",
            guidance=3.0, gen_seed=0)
    raw = collect_runs(tmp_path)
    assert "synthetic_per_class" not in raw and raw["per_class"].tolist() == [200, 0]
    store = tidy_runs(raw)
    by_run = store.set_index("run")["per_class"]
    assert by_run["bridged++-single-g3-n200-k4-s0"] == 200
    assert pd.isna(by_run["vanilla-k4-s0"])  # 0 synthetic images: no per_class, as before
    assert store["syn_per_real"].tolist() == [50.0, 0.0]
    assert load_runs(tmp_path)[0].set_index("run")["per_class"].equals(by_run)


def test_old_and_new_run_folders_in_one_root(tmp_path):
    old_run(tmp_path, "a-old", "bridged++", 25)
    (tmp_path / "b-new").mkdir()
    (tmp_path / "b-new" / "metrics.json").write_text(json.dumps(
        {"recipe": "bridged++", "shots": 4, "seed": 1, "test_acc": 0.7, "pretrained": True,
         "train_images": 40, "synthetic_images": 500, "per_class": 50}))
    assert tidy_runs(collect_runs(tmp_path))["per_class"].tolist() == [25, 50]
