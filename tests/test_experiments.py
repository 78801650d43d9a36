"""Sweeps: the grid's cells, synthetic sets reused (never redrawn), resume, and the tidy store."""
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bridgelib import experiments
from bridgelib.config import get_config
from bridgelib.experiments import Cell, find_synthetic_set, plan_sweep, run_sweep
from bridgelib.generate import generate_synthetic_set
from bridgelib.manifest import complete_per_class, read_manifest, synthetic_subset
from bridgelib.pipeline import load_pipeline
from bridgelib.store import STORE_COLUMNS, collect_histories, load_runs, read_store

TINY = {"train.real.epochs": 1, "train.real.min_steps": 2, "train.real.batch_size": 16,
        "train.synthetic.epochs": 1, "train.synthetic.batch_size": 8,
        "generation.steps": 2, "invert.steps": 2, "invert.checkpoint_every": 2,
        "invert.batch_size": 4}
CLASSES = ["digit one", "digit seven"]


@pytest.fixture(scope="module")
def cfg(tiny_model):
    return get_config("mini", **{"generation.model": str(tiny_model), **TINY})


@pytest.fixture(scope="module")
def pipe(cfg):
    return load_pipeline(cfg)


class Counter:
    """Stands in for train_run: counts calls, then trains for real (or crashes on call `fail`)."""

    def __init__(self, fail: int | None = None):
        self.calls, self.fail, self.real = [], fail, experiments.train_run

    def __call__(self, cfg, recipe, out, **kw):
        self.calls.append(out.name)
        if len(self.calls) == self.fail:
            raise KeyboardInterrupt("interrupted")
        return self.real(cfg, recipe, out, **kw)


def no_pipeline(*args, **kwargs):
    raise AssertionError("a finished sweep must not load the generator")


def test_plan_shares_vanilla_across_volume_guidance_and_template():
    cells = plan_sweep(["vanilla", "bridged++"], shots=["4", "full"], seeds=[0, 1],
                       per_class=[25, 50], guidances=[1, 3], templates=["single", "dsi"])
    vanilla = [c for c in cells if c.recipe == "vanilla"]
    assert len(vanilla) == 2 * 2 and all(c.per_class is None for c in vanilla)
    assert len(cells) == 4 + 2 * 2 * 2 * 2 * 2
    assert len({c.name for c in cells}) == len(cells)
    assert Cell("bridged++", 4, 0, 25, 7.5, "dsi").name == "bridged++-dsi-g7.5-n25-k4-s0"
    assert Cell("vanilla", "full", 2, scratch=True).name == "vanilla-kfull-s2-scratch"
    assert {c.shots for c in cells} == {4, "full"}


def test_alternate_gen_seeds_gives_each_training_seed_one_set():
    grid = dict(recipes=["vanilla", "bridged++"], shots=["full"], seeds=range(4), per_class=[50],
                gen_seeds=[0, 1], match_compute=True)
    crossed = plan_sweep(**grid)
    alternate = plan_sweep(**grid, alternate_gen_seeds=True)
    assert len([c for c in crossed if c.recipe == "bridged++"]) == 8
    synthetic = [c for c in alternate if c.per_class]  # bridged++ and the matched vanilla
    assert sorted((c.recipe, c.seed, c.gen_seed) for c in synthetic) == sorted(
        (r, s, s % 2) for r in ("bridged++", "vanilla") for s in range(4))
    # plain vanilla has no generation seed: one run per training seed either way
    assert len([c for c in alternate if c.recipe == "vanilla" and not c.per_class]) == 4


@pytest.mark.parametrize("kw, named", [
    (dict(recipes=["bridged+"]), "'bridged+'"),
    (dict(recipes=["mixed"]), "per_class"),
    (dict(recipes=["mixed"], per_class=[0]), "per_class=0"),
    (dict(recipes=["mixed"], per_class=[5], templates=["fancy"]), "'fancy'"),
    (dict(shots=["0"]), "shots="),
])
def test_bad_grids_are_refused_in_one_line(kw, named):
    with pytest.raises(ValueError, match=re.escape(named)) as err:
        plan_sweep(**kw)
    assert "\n" not in str(err.value)


def test_first_n_of_a_bigger_set_is_the_n_image_set(cfg, pipe, tmp_path):
    kw = dict(class_names=CLASSES, pipe=pipe, progress_bar=False)
    big = generate_synthetic_set(cfg, tmp_path / "big", per_class=3, **kw)
    small = generate_synthetic_set(cfg, tmp_path / "small", per_class=2, **kw)
    sub = synthetic_subset(big, 2, tmp_path / "sub")
    cols = ["file_name", "label", "seed", "prompt", "guidance_scale"]
    pd.testing.assert_frame_equal(read_manifest(sub)[cols], read_manifest(small)[cols])
    for name in read_manifest(small)["file_name"]:
        a, b = (np.asarray(Image.open(d / name)).astype(int) for d in (sub, small))
        assert np.abs(a - b).max() <= 1  # batching rounding only (generate.py)
    run = json.loads((sub / "run.json").read_text())
    assert run["request"]["per_class"] == 2 and run["subset_of"]["per_class"] == 3
    assert complete_per_class(sub) == 2 and not list(tmp_path.glob(".*.tmp"))
    assert synthetic_subset(big, 2, tmp_path / "sub") == sub  # already there: kept as is
    with pytest.raises(ValueError, match="per_class=4"):
        synthetic_subset(big, 4, tmp_path / "sub4")


def test_find_synthetic_set_picks_the_smallest_big_enough_match(cfg, pipe, tmp_path):
    root = tmp_path / "cache"
    for n, g in ((3, 3.0), (5, 3.0), (9, 7.0)):
        generate_synthetic_set(cfg, root / f"n{n}-g{g:g}", per_class=n, guidance=g, pipe=pipe,
                               progress_bar=False)
    assert find_synthetic_set(cfg, 2, "single", 3.0, root=root) == root / "n3-g3"
    assert find_synthetic_set(cfg, 4, "single", 3.0, root=root) == root / "n5-g3"
    assert find_synthetic_set(cfg, 6, "single", 3.0, root=root) is None
    assert find_synthetic_set(cfg, 6, "single", 7.0, root=root) == root / "n9-g7"
    other = get_config("mini", **{**TINY, "generation.model": cfg.generation.model, "seed": 1})
    assert find_synthetic_set(other, 2, "single", 3.0, root=root) is None  # another seed


def test_sweep_writes_the_store_and_a_rerun_trains_nothing(cfg, tmp_path, monkeypatch):
    root, cache = tmp_path / "sweep", tmp_path / "cache"
    grid = dict(recipes=["vanilla", "bridged++"], shots=[1], seeds=[0], per_class=[1, 2],
                guidances=[2.0, None], cache=cache)
    counter = Counter()
    monkeypatch.setattr(experiments, "train_run", counter)
    store = run_sweep(cfg, root, **grid)
    assert len(counter.calls) == 5  # vanilla once, bridged++ at 2 volumes x 2 guidances
    sources = sorted(p.name for p in (cache / "synthetic").iterdir())
    assert len(sources) == 2 and all("-n2-" in s for s in sources)  # one set per guidance
    assert sorted(p.name for p in (root / "synthetic").iterdir()) == [f"{s}-first1" for s in sources]
    on_disk = pd.read_csv(root / "results.csv")
    assert list(on_disk.columns[:len(STORE_COLUMNS)]) == list(STORE_COLUMNS)
    assert len(on_disk) == 5 and on_disk["run"].is_unique
    syn = on_disk[on_disk.recipe == "bridged++"].sort_values(["guidance", "per_class"])
    assert syn[["guidance", "per_class"]].values.tolist() == [[2, 1], [2, 2], [3, 1], [3, 2]]
    assert (syn["synthetic_images"] == syn["per_class"] * 10).all()
    assert (syn["template"] == "single").all() and not on_disk["scratch"].any()
    van = on_disk[on_disk.recipe == "vanilla"].iloc[0]
    assert pd.isna(van["per_class"]) and pd.isna(van["guidance"]) and pd.isna(van["template"])
    assert set(on_disk["profile"]) == {"mini"} and set(on_disk["dataset"]) == {"fashion-mnist"}
    assert on_disk["test_acc"].between(0, 1).all() and on_disk["leep_pretrained"].notna().all()

    before = {p: p.stat().st_mtime_ns for p in root.glob("*/metrics.json")}
    counter.calls.clear()
    for home in ("bridgelib.pipeline", "bridgelib.generate"):  # where experiments and generate look
        monkeypatch.setattr(f"{home}.load_pipeline", no_pipeline)
    again = run_sweep(cfg, root, **grid)
    assert counter.calls == []  # nothing trained, nothing generated
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/metrics.json")} == before
    pd.testing.assert_frame_equal(again, store)
    assert len(read_store(root)) == 5


def test_an_interrupted_sweep_resumes_where_it_stopped(cfg, tmp_path, monkeypatch):
    root = tmp_path / "sweep"
    grid = dict(recipes=["vanilla", "mixed"], shots=[1, 2], seeds=[0], per_class=[1],
                cache=tmp_path / "cache")
    monkeypatch.setattr(experiments, "train_run", Counter(fail=3))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, root, **grid)
    assert len(read_store(root)) == 2  # the store was rewritten after each finished run
    counter = Counter()
    monkeypatch.setattr(experiments, "train_run", counter)
    store = run_sweep(cfg, root, **grid)
    assert len(counter.calls) == 2 and len(store) == 4
    assert sorted(store["shots"]) == [1, 1, 2, 2]


def test_a_k_shot_dsi_run_learns_its_token_on_its_own_k_shot_subset(cfg, tmp_path, monkeypatch):
    # The science rule: a k-shot arm sees k real images per class, its style token included.
    from bridgelib.datasets import load_dataset
    from bridgelib.invert import _images_sha256
    root, cache = tmp_path / "sweep", tmp_path / "cache"
    counter = Counter()
    monkeypatch.setattr(experiments, "train_run", counter)
    run_sweep(cfg, root, recipes=["vanilla"], shots=[1], cache=cache)
    store = run_sweep(cfg, root, recipes=["vanilla", "bridged"], shots=[1], seeds=[0, 1],
                      per_class=[1], templates=["dsi"], cache=cache)
    assert counter.calls.count("vanilla-k1-s0") == 1  # the first sweep's vanilla is reused
    assert len(counter.calls) == 4
    records = {json.loads(p.read_text())["seed"]: json.loads(p.read_text())
               for p in (cache / "dsi").glob("*/learned_embeds.json")}
    assert sorted(records) == [0, 1]  # one token per 1-shot subset, none on the pool
    for seed, record in records.items():
        subset = load_dataset(cfg, "train", 1, seed, size=cfg.generation.resolution)
        assert record["images"] == len(subset) == 10 and record["real_per_class"] == 1
        assert record["images_sha256"] == _images_sha256(subset)  # exactly that subset
    dsi = store[store["template"] == "dsi"]
    assert len(dsi) == 2 and (dsi["token_real_per_class"] == 1).all()
    assert store.loc[store["recipe"] == "vanilla", "token_real_per_class"].isna().all()


def test_workers_train_the_same_runs_as_one_process(cfg, tmp_path, monkeypatch):
    # At the same number of PyTorch threads (a worker gets its share of the cores: one each on
    # 2 cores); a different thread count sums in another order, a few test images apart.
    from bridgelib.files import THREADS_ENV
    grid = dict(recipes=["bridged"], shots=[1], seeds=[0, 1], per_class=[1],
                cache=tmp_path / "cache")
    monkeypatch.setenv(THREADS_ENV, "1")
    one = run_sweep(cfg, tmp_path / "one", **grid)
    two = run_sweep(cfg, tmp_path / "two", workers=2, **grid)
    cols = ["run", "test_acc", "leep_pretrained", "leep_after_synthetic"]
    pd.testing.assert_frame_equal(one[cols].sort_values("run", ignore_index=True),
                                  two[cols].sort_values("run", ignore_index=True))


def test_a_given_synthetic_set_gives_its_own_template_and_guidance(cfg, pipe, tmp_path, monkeypatch):
    given = generate_synthetic_set(cfg, tmp_path / "given", per_class=2, guidance=5.0, pipe=pipe,
                                   progress_bar=False)
    monkeypatch.setattr(experiments, "train_run", Counter())
    store = run_sweep(cfg, tmp_path / "sweep", recipes=["bridged"], shots=[1], per_class=[1, 2],
                      synthetic_dir=given)
    assert sorted(store["run"]) == ["bridged-single-g5-n1-k1-s0", "bridged-single-g5-n2-k1-s0"]
    assert (tmp_path / "sweep" / "synthetic" / "given-first1").is_dir()
    with pytest.raises(ValueError, match="per_class=3"):
        run_sweep(cfg, tmp_path / "sweep", recipes=["bridged"], shots=[1], per_class=[3],
                  synthetic_dir=given)


def test_load_runs_reads_run_folders_and_shipped_stores(cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "train_run", Counter())
    run_sweep(cfg, tmp_path / "a", recipes=["vanilla"], shots=[1, 2])
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (tmp_path / "a" / "results.csv").rename(shipped / "results.csv")
    collect_histories(tmp_path / "a").to_csv(shipped / "histories.csv", index=False)
    store, histories = load_runs(shipped)
    assert len(store) == 2 and set(histories["run"]) == {"vanilla-k1-s0", "vanilla-k2-s0"}
    store, histories = load_runs(tmp_path / "a", shipped)  # same names: kept apart
    assert sorted(store["run"]) == ["a/vanilla-k1-s0", "a/vanilla-k2-s0",
                                    "shipped/vanilla-k1-s0", "shipped/vanilla-k2-s0"]
    assert set(histories["run"]) == set(store["run"])
    with pytest.raises(FileNotFoundError, match="no runs"):
        load_runs(tmp_path / "nothing")


def load_tool():
    import importlib.util
    from bridgelib.config import REPO_ROOT
    spec = importlib.util.spec_from_file_location("build_results_store",
                                                  REPO_ROOT / "tools" / "build_results_store.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_the_store_building_tool_end_to_end_on_a_tiny_grid(cfg, tmp_path, monkeypatch):
    tool = load_tool()
    grid = {"seeds": [0], "families": {
        "volume": dict(recipes=["vanilla", "bridged++"], shots=[1], per_class=[1, 2]),
        "recipes": dict(recipes=["vanilla", "mixed", "bridged++"], shots=[1], per_class=[2])}}
    root, dest, cache = tmp_path / "sweeps", tmp_path / "store", tmp_path / "cache"
    before = tool.plan(cfg, grid, root, cache)
    assert (before["runs"], before["todo"], before["images"]) == (4, 4, 20)  # vanilla, n2 shared
    counter = Counter()
    monkeypatch.setattr(experiments, "train_run", counter)
    meta = tool.build_store(cfg, grid, root, dest, cache=cache, name="full", families=["volume"])
    assert len(counter.calls) == 3 and meta["provisional"]  # a partial build says so
    assert meta["missing_runs"] == ["mixed-single-g3-n2-k1-s0"]
    meta = tool.build_store(cfg, grid, root, dest, cache=cache, name="full")
    assert len(counter.calls) == 4 and not meta["provisional"] and meta["runs"] == 4
    assert [c["command"].split()[:2] for c in meta["commands"]] == [["bridge", "sweep"]] * 2
    assert "--per-class 1 2" in meta["commands"][0]["command"]
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "histories.csv", "results.csv", "store.json"]
    store = read_store(dest)
    assert len(store) == 4 and store["run"].is_unique
    histories = pd.read_csv(dest / "histories.csv")
    assert set(histories["run"]) == {"vanilla-k1-s0", "mixed-single-g3-n2-k1-s0",
                                     "bridged++-single-g3-n2-k1-s0"}
    assert list(histories.columns) == tool.HISTORY_COLUMNS
    assert sum(p.stat().st_size for p in dest.iterdir()) < 50_000
    after = tool.plan(cfg, grid, root, cache)
    assert (after["todo"], after["images"]) == (0, 0)
    counter.calls.clear()
    for home in ("bridgelib.pipeline", "bridgelib.generate"):  # where experiments and generate look
        monkeypatch.setattr(f"{home}.load_pipeline", no_pipeline)
    assert tool.build_store(cfg, grid, root, dest, cache=cache, name="tiny")["provisional"]
    assert counter.calls == []
    from bridgelib.store import describe_store
    assert describe_store(dest).missing_runs == ()  # the writer and its reader agree


def test_full_grid_plan_shares_runs_between_families():
    tool = load_tool()
    cfg = get_config("mini")
    cells = {c.name: c for fam in tool.GRIDS["full"]["families"].values()
             for c in tool.family_cells(cfg, fam, tool.SEEDS)}
    plain = sorted(n for n in cells if n.startswith("vanilla-k"))
    assert set(plain) == {*(f"vanilla-k{k}-s{s}" for k in tool.SHOTS for s in tool.SEEDS),
                          *(f"vanilla-k{k}-s{s}-scratch" for k in tool.SHOTS for s in range(3)),
                          *(f"vanilla-k4-s{s}" for s in tool.FEW_SHOT_SEEDS),
                          *(f"vanilla-kfull-s{s}" for s in tool.PAPER_SEEDS)}
    assert "bridged++-single-g3-n100-k4-s0" in cells  # volume-epochs and guidance share it
    # the claims' settings: the paper's mixing ratio with its compute-matched vanilla, the
    # fixed-budget volume study and DSI at a second generation seed, five training seeds
    for name in ("mixed-single-g3-n2400-kfull-s4", "vanilla-matched-single-g3-n2400-kfull-s4",
                 "bridged++-single-g3-n400-gen1-steps125-kfull-s4",
                 "bridged++-dsi-g3-n200-gen1-kfull-s4", "synthetic-only-single-g3-n2400-kfull-s4",
                 # the paper's setting: 1,500/class at 20 seeds at 4 shots, 3,000 in two protocols
                 "bridged++-single-g3-n1500-gen1-kfull-s9", "bridged-single-g3-n1500-k4-s19",
                 "vanilla-matched-single-g3-n1500-k4-s19", "bridged++-dsi-g3-n200-k4-s19",
                 "bridged++-single-g3-n3000-steps940-k4-s19", "mixed-single-g3-n1500-epochs-kfull-s4"):
        assert name in cells, name
    # full pool, paper's setting: seed s trains on generation seed s % 2 only
    assert "bridged++-single-g3-n1500-gen1-kfull-s4" not in cells
    assert "bridged++-single-g3-n1500-kfull-s4" in cells
    assert "bridged++-dsi-g3-n200-k4-s4" not in {  # the pool-token 4-shot DSI runs are gone
        c.name for f, fam in tool.GRIDS["full"]["families"].items() if not f.startswith("paper")
        for c in tool.family_cells(cfg, fam, tool.SEEDS)}
    assert tool.run_steps(cfg, cells["bridged++-single-g3-n1500-gen1-kfull-s9"]) == \
        tool.PAPER_BUDGET + 15 * 32  # synthetic 4 epochs of 15,000 / 64, real 15 of 1,000 / 32
    assert cells["bridged++-single-g3-n400-gen1-steps125-kfull-s4"].fixed_steps == 125
    command = tool.sweep_command("mini", tool.GRIDS["full"]["families"]["guidance"], [0, 1, 2], "out")
    assert command == ("bridge sweep --profile mini --recipes vanilla bridged++ --shots 4 --seeds "
                       "0 1 2 --per-class 100 --guidance 1 2 3 5 7.5 --gen-seeds 0 1 --no-save-model --out out")


def test_bridge_sweep_then_bridge_report(tmp_path, capsys):
    import bridgelib.cli as cli
    tiny = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    out, report = tmp_path / "sweep", tmp_path / "report"
    assert cli.main(["sweep", "--recipes", "vanilla", "--shots", "1", "2", "--out", str(out),
                     *tiny]) == 0
    assert "vanilla" in capsys.readouterr().out and len(read_store(out)) == 2
    assert cli.main(["report", "--runs", str(out), "--out", str(report)]) == 0
    files = {p.name for p in report.iterdir()}
    assert {"accuracy_vs_shots.png", "accuracy_vs_shots.svg", "accuracy_vs_shots.csv",
            "convergence.png", "claims.csv", "report.md", "summary.csv"} <= files
    assert len(pd.read_csv(report / "summary.csv")) == 2  # vanilla kept despite no template
    code = cli.main(["sweep", "--recipes", "bridged", "--synthetic", str(out), "--guidance", "2",
                     "--out", str(out), *tiny])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--synthetic" in err and "\n" not in err


def test_a_folder_of_runs_from_another_setup_is_refused(cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "train_run", Counter())
    run_sweep(cfg, tmp_path / "sweep", recipes=["vanilla"], shots=[1])
    other = get_config("mini", **{**TINY, "generation.model": cfg.generation.model,
                                  "train.real.epochs": 3})
    with pytest.raises(ValueError, match=r"train\.real\.epochs: 1, now 3") as err:
        run_sweep(other, tmp_path / "sweep", recipes=["vanilla"], shots=[1])
    assert "\n" not in str(err.value)
    folders = {experiments.sweep_folder(c, tmp_path) for c in (cfg, other)}
    assert len(folders) == 2 and all(f.name.startswith("mini-") for f in folders)


def test_a_results_csv_no_sweep_wrote_is_never_replaced(cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "train_run", Counter())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("my own table")
    with pytest.raises(FileExistsError, match="no sweep's runs"):
        run_sweep(cfg, mine, recipes=["vanilla"], shots=[1])
    assert (mine / "results.csv").read_text() == "my own table"
    assert sorted(p.name for p in mine.iterdir()) == ["results.csv"]


def test_generation_seeds_budgets_and_compute_matching_are_cells_of_their_own():
    from bridgelib.data import ImageSet
    from bridgelib.transfer import plan_stages, stage_steps
    cells = plan_sweep(["vanilla", "bridged++"], shots=[1], seeds=[0], per_class=[25],
                       gen_seeds=[0, 1], fixed_steps=10, match_compute=True)
    names = {c.name: c for c in cells}
    assert set(names) == {"vanilla-k1-s0", "vanilla-matched-single-g3-n25-k1-s0",
                          "vanilla-matched-single-g3-n25-gen1-k1-s0",
                          "bridged++-single-g3-n25-steps10-k1-s0",
                          "bridged++-single-g3-n25-gen1-steps10-k1-s0"}
    cfg = get_config("mini")
    bridged = names["bridged++-single-g3-n25-gen1-steps10-k1-s0"]
    assert bridged.gen_seed == 1 and bridged.config(cfg).train.synthetic.steps == 10
    assert cfg.train.synthetic.steps is None  # the sweep's own config is left alone
    matched = names["vanilla-matched-single-g3-n25-k1-s0"].config(cfg)
    assert matched.train.match_compute and matched.train.synthetic.steps is None

    def images(n):
        return ImageSet(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.arange(n) % 10,
                        [str(i) for i in range(10)])
    real, syn = images(10), images(250)
    fixed = plan_stages("bridged++", real, syn, bridged.config(cfg))
    assert [stage_steps(s) for s in fixed] == [10, cfg.train.real.min_steps]
    natural = plan_stages("bridged", real, syn, cfg)
    budget = plan_stages("vanilla", real, syn, matched)
    assert stage_steps(budget[0]) == sum(stage_steps(s) for s in natural)
    with pytest.raises(ValueError, match="fixed_steps=-1"):
        plan_sweep(["bridged++"], per_class=[25], fixed_steps=-1)
    with pytest.raises(ValueError, match="guidance=inf"):
        plan_sweep(["bridged++"], per_class=[25], guidances=[float("inf")])
    with pytest.raises(ValueError, match="gen_seed=-2"):
        plan_sweep(["bridged++"], per_class=[25], gen_seeds=[-2])
    with pytest.raises(ValueError, match="match_compute needs per_class"):
        plan_sweep(["vanilla"], match_compute=True)
