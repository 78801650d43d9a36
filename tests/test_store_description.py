"""A results store read through the package: what its store.json says (`describe_store`), its
histories (`read_histories`), one setting's runs (`claims.setting_runs`), the notebooks' banner."""
import json

import pandas as pd
import pytest

from bridgelib.claims import setting_runs
from bridgelib.config import REPO_ROOT, get_config
from bridgelib.notebook import store_banner
from bridgelib.store import (META_FILE, StoreInfo, collect_histories, describe_store,
                             read_histories, read_store)

SHIPPED = REPO_ROOT / "data" / "results" / "store"


def write_store(folder, meta=None, rows=None):
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows or [{"run": f"vanilla-k4-s{s}", "recipe": "vanilla", "shots": 4, "seed": s,
                     "precision": p, "profile": "mini", "dataset": "fashion-mnist",
                     "test_acc": 0.5 + s / 100} for s, p in ((0, "auto"), (1, "auto"), (2, "fp32"))]
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    if meta is not None:
        (folder / META_FILE).write_text(json.dumps(meta))
    return folder


def test_describe_a_made_up_store(tmp_path):
    meta = {"grid": "quick", "provisional": True, "built": "2030-01-01 00:00:00",
            "commands": [{"family": "recipes", "command": "bridge sweep --shots 4"}],
            "profile": "workshop", "dataset": "dtd", "runs": 3, "missing_runs": ["a", "b"],
            "generator": "data/gen", "generator_fingerprint": "abc123", "seeds": [0, 1, 2],
            "families": {"recipes": {}}, "ran_now": []}
    info = describe_store(write_store(tmp_path / "s", meta))
    assert info == StoreInfo(profile="workshop", dataset="dtd", runs=3, grid="quick",
                             provisional=True, missing_runs=("a", "b"), seeds=(0, 1, 2),
                             built="2030-01-01 00:00:00", generator="data/gen",
                             generator_fingerprint="abc123",
                             commands=({"family": "recipes", "command": "bridge sweep --shots 4"},))
    assert info.summary() == "3 runs (workshop, dtd), seeds [0, 1, 2], grid 'quick', built 2030-01-01 00:00:00"


def test_an_old_store_json_without_the_newer_keys_still_loads(tmp_path):
    # the first builds recorded no missing runs, fingerprint, seeds or commands
    info = describe_store(write_store(tmp_path / "s", {"profile": "mini", "dataset": "digits",
                                                       "runs": 39, "grid": "full"}))
    assert (info.runs, info.grid, info.provisional, info.missing_runs) == (39, "full", False, ())
    assert info.generator_fingerprint is None and info.commands == () and info.seeds == ()


def test_a_store_json_without_its_profile_is_refused_in_one_line(tmp_path):
    folder = write_store(tmp_path / "s", {"dataset": "digits", "runs": 3})
    with pytest.raises(ValueError, match=r"store\.json' lacks \['profile'\]") as err:
        describe_store(folder)
    assert "\n" not in str(err.value)


def test_a_sweep_folder_is_described_from_its_runs(tmp_path):
    info = describe_store(write_store(tmp_path / "sweep"))
    assert (info.profile, info.dataset, info.runs, info.grid) == ("mini", "fashion-mnist", 3, None)
    with pytest.raises(FileNotFoundError, match="no results store"):
        describe_store(tmp_path / "nothing")


def test_the_shipped_store_is_described_as_its_rows():
    info = describe_store(SHIPPED)
    store = read_store(SHIPPED)
    assert info.runs == len(store) and info.profile == "mini"
    assert set(info.missing_runs).isdisjoint(store["run"])
    assert {c["family"] for c in info.commands} >= {"recipes"}


def test_read_histories_from_a_shipped_store_or_from_run_folders(tmp_path):
    shipped = read_histories(SHIPPED)
    assert {"run", "stage", "epoch", "test_acc"} <= set(shipped.columns) and len(shipped) > 100
    for run, acc in (("a", 0.5), ("b", 0.7)):
        (tmp_path / run).mkdir()
        pd.DataFrame({"stage": ["real"] * 2, "epoch": [1, 2], "test_acc": [acc, acc + 0.1]}) \
            .to_csv(tmp_path / run / "history.csv", index=False)
    swept = read_histories(tmp_path)
    assert swept.groupby("run")["test_acc"].max().round(2).to_dict() == {"a": 0.6, "b": 0.8}
    collect_histories(tmp_path).iloc[:1].to_csv(tmp_path / "histories.csv", index=False)
    assert len(read_histories(tmp_path)) == 1  # the store's own file wins


def test_setting_runs_splits_the_two_settings():
    store = read_store(SHIPPED)
    second, paper = setting_runs(store, "second"), setting_runs(store, "paper")
    assert len(second) + len(paper) == len(store) and len(second) and len(paper)
    assert set(second["precision"]) == {"auto"} and set(paper["precision"]) == {"fp32"}
    with pytest.raises(ValueError, match=r"setting 'third' is not one of .*'paper', 'second'"):
        setting_runs(store, "third")


def test_a_store_from_before_precision_was_recorded_is_all_second(tmp_path):
    rows = [{"run": "r", "recipe": "vanilla", "shots": 4, "seed": 0, "test_acc": 0.5}]
    store = read_store(write_store(tmp_path / "old", rows=rows))
    assert len(setting_runs(store, "second")) == 1 and setting_runs(store, "paper").empty


def test_the_banner_says_why_to_read_a_store_with_care(tmp_path, capsys):
    cfg = get_config("mini")
    base = {"profile": "mini", "dataset": "fashion-mnist", "runs": 3, "grid": "full"}
    store_banner(cfg, write_store(tmp_path / "ok", {**base, "provisional": False}))
    assert "NOTE" not in capsys.readouterr().out
    store_banner(cfg, write_store(tmp_path / "bad", {**base, "provisional": True,
                                                     "missing_runs": ["x"],
                                                     "generator_fingerprint": "0000"}))
    out = capsys.readouterr().out
    assert "PROVISIONAL (grid 'full', 1 of its runs missing)" in out
    assert "another build of the generator" in out
