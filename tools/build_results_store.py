"""Build the course's shipped results store: each figure family of the paper is one sweep.

    python tools/build_results_store.py [--grid full|provisional] [--plan | --export]
        [--families volume guidance shots recipes template] [--seeds 0 1 2]
        [--root cache/sweeps/store] [--dest data/results/store] [--profile mini]

`make results` runs the full grid (3 seeds) with the profile's generator.

Each family is one `bridge sweep` (the equivalent command is printed and kept in store.json)
into the same --root, so a run two families share (vanilla at 4 shots, bridged++ at 4 shots and
200/class, ...) trains once. Interrupt and rerun at will: finished runs and generated sets are
never recomputed (`bridgelib.experiments.run_sweep`). Families run in the order below, so the
volume family draws the 400/class set once and the others take its first 100 or 200 per class.

Then the compact store is copied to --dest: results.csv (one row per run of the grid),
histories.csv (per-epoch histories of the recipes family, for the convergence figure) and
store.json (grid, commands, generator fingerprint, runs, whether it is provisional).
--plan prints what would run (runs, images to generate, an estimate of the time) and stops;
--export copies what is finished so far (a build killed mid-way: rerun it to continue).
"""
from __future__ import annotations

import argparse
import functools
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

RECIPES = ["vanilla", "mixed", "bridged", "bridged-reinit", "bridged++"]  # the transfer recipes
SHOTS = [1, 2, 4, 8, 16, "full"]
SEEDS = [0, 1, 2, 3, 4]          # training seeds of every claim's setting
# The two settings' volumes and synthetic-stage budgets are the claims' (one home): the second
# setting at DEFAULT_PER_CLASS (its volume study at FIXED_BUDGET steps), the paper's own setting
# (its main experiments add 1,000 synthetic images per class, about 15 per real image) at
# PAPER_PER_CLASS = 1,500 per class = 15 : 1 on the mini pool, the synthetic stage at its epochs
# (PAPER_BUDGET steps, the fixed budget of its volume study).
from bridgelib.claims import (DEFAULT_PER_CLASS, FIXED_BUDGET, PAPER_BUDGET,  # noqa: E402
                              PAPER_PER_CLASS)
# Full pool: 10 training seeds, seed s on generation seed s % 2 (`alternate_gen_seeds`): 5 per
# generation seed, and each vanilla run pairs with one run of each recipe (10 independent pairs;
# every seed on both sets would pair each vanilla twice: 5 pairs, or 10 that count runs twice).
PAPER_SEEDS = list(range(10))
PAPER_GEN_SEEDS = dict(seeds=PAPER_SEEDS, gen_seeds=[0, 1], alternate_gen_seeds=True)
FEW_SHOT_SEEDS = list(range(20))  # 4 shots: 20 paired seeds (the k-shot draw is the noise)
# Both arms of every paper-setting comparison run in fp32, whatever the CPU (auto would train
# in bf16 on a Xeon with AMX and in fp32 elsewhere, and a store is built over several sessions
# on both kinds); the paper families' runs sit in their own folder and carry the prefix "fp32/".
PAPER_SETTING = {"precision": "fp32"}


def _mixing(k) -> dict:
    """One row of the mixing map: mixed at shots k, at each mixing ratio of SYN_PER_REAL."""
    from bridgelib.mini.fashion import POOL_PER_CLASS
    from bridgelib.claims import SYN_PER_REAL  # 1 : 1, 4 : 1 and the paper's 15 : 1 and 24 : 1
    real = POOL_PER_CLASS if k == "full" else k  # real images per class
    return dict(recipes=["vanilla", "mixed"], shots=[k], per_class=[real * r for r in SYN_PER_REAL])


# The figure families, in the order they are built: the claims' settings first (a build cut
# short still tests most claims), the paper's mixing ratio early because its 2,400/class set is
# the longest to draw; the families at 3 seeds last. Each runs SEEDS unless it says otherwise;
# "gen_seeds" [0, 1] puts generation noise (a second set, a second DSI token) into the claims
# that depend on the images drawn (volume, guidance, DSI).
def _paper(**family) -> dict:
    return {"per_class": [PAPER_PER_CLASS], "set": PAPER_SETTING, **family}


PAPER_RECIPES = ["vanilla", "bridged", "bridged-reinit", "bridged++"]
# The paper's setting, most important first: the recipes (bridged++ beats vanilla, the ablation
# order, convergence, LEEP on plain bridged) at 1,500/class on the full pool and at 4 shots;
# DSI with tokens that see only each arm's own real images; volume 500-3,000 in two protocols
# (epochs fixed: steps grow with the set; steps fixed at PAPER_BUDGET: more images, not more
# training; at 1,500/class the two are the same run); mixed at 15 : 1 under both budgets.
PAPER_FAMILIES = {
    # bridged++ first: a build cut short still has the central claim's rows
    "paper-main": _paper(recipes=["vanilla", "bridged++", "bridged", "bridged-reinit"],
                         shots=["full"], **PAPER_GEN_SEEDS, match_compute=True),
    "paper-main-k4": _paper(recipes=PAPER_RECIPES, shots=[4], seeds=FEW_SHOT_SEEDS,
                            match_compute=True),
    "paper-dsi-k4": _paper(recipes=["vanilla", "bridged++"], shots=[4], seeds=FEW_SHOT_SEEDS,
                           per_class=[DEFAULT_PER_CLASS], templates=["single", "dsi"]),
    "paper-dsi-full": _paper(recipes=["vanilla", "bridged++"], shots=["full"],
                             templates=["dsi"], **PAPER_GEN_SEEDS),
    "paper-volume": _paper(recipes=["vanilla", "bridged++"], shots=["full"],
                           per_class=[500, 1500, 3000], **PAPER_GEN_SEEDS),
    "paper-volume-k4": _paper(recipes=["vanilla", "bridged++"], shots=[4], seeds=FEW_SHOT_SEEDS,
                              per_class=[500, 1500, 3000]),
    "paper-volume-steps": _paper(recipes=["bridged++"], shots=["full"], per_class=[500, 3000],
                                 **PAPER_GEN_SEEDS, fixed_steps=PAPER_BUDGET),
    "paper-volume-steps-k4": _paper(recipes=["bridged++"], shots=[4], seeds=FEW_SHOT_SEEDS,
                                    per_class=[500, 3000], fixed_steps=PAPER_BUDGET),
    "paper-mixed": _paper(recipes=["vanilla", "mixed"], shots=["full"]),
    "paper-mixed-epochs": _paper(recipes=["vanilla", "mixed"], shots=["full"], mixed_epochs=True),
}

GRIDS = {
    "full": {"seeds": SEEDS, "families": {
        **PAPER_FAMILIES,
        # The second setting (200/class, the store's first): families built before the paper's.
        # Every recipe at every shot setting (the radar, the ablation order, the convergence
        # histories), beside a vanilla trained as many steps as bridged (the fair-budget control).
        "recipes": dict(recipes=RECIPES, shots=SHOTS, per_class=[DEFAULT_PER_CLASS], match_compute=True),
        # The mixing map's full-pool row: the paper's 15 : 1 and 24 : 1, compute-matched too.
        "mixing-full": {**_mixing("full"), "match_compute": True},
        # More images at a fixed synthetic-stage budget: more data, not more training.
        "volume": dict(recipes=["vanilla", "bridged++"], shots=[4, "full"],
                       per_class=[25, 50, 100, 200, 400], gen_seeds=[0, 1],
                       fixed_steps=FIXED_BUDGET),
        # DSI at the full pool only: the 4-shot DSI runs of this setting used a token learned on
        # the whole pool (more real images than the arm's 40); paper-dsi-k4 replaces them.
        "template": dict(recipes=["vanilla", "bridged++"], shots=[4, "full"], per_class=[DEFAULT_PER_CLASS],
                         templates=["single"], gen_seeds=[0, 1]),
        "template-dsi": dict(recipes=["bridged++"], shots=["full"], per_class=[DEFAULT_PER_CLASS],
                             templates=["dsi"], gen_seeds=[0, 1]),
        "guidance": dict(recipes=["vanilla", "bridged++"], shots=[4], per_class=[100],
                         guidances=[1, 2, 3, 5, 7.5], gen_seeds=[0, 1]),
        # What the generator alone teaches (no real image seen), at every volume of the study.
        "synthetic-only": dict(recipes=["synthetic-only"], shots=["full"],
                               per_class=[25, 50, 100, 200, 400, 1500, 2400]),
        # The rest of the mixing map: shots x real share.
        **{f"mixing-k{k}": _mixing(k) for k in [16, 4, 1]},
        # Volume at the recipes' own epoch budgets (more data is also more training), 3 seeds.
        "volume-epochs": dict(recipes=["vanilla", "mixed", "bridged", "bridged++"], shots=[4],
                              per_class=[25, 50, 100, 200, 400], seeds=[0, 1, 2]),
        # Pretrained vs random initialisation (notebook 01), 3 seeds.
        "scratch": dict(recipes=["vanilla"], shots=SHOTS, scratch=[False, True], seeds=[0, 1, 2]),
    }},
    # A stand-in until the full store is built: one seed and the fewest runs that still draw
    # every figure (small sets on top of notebook 03/04's cached ones).
    "provisional": {"seeds": [0], "families": {
        "recipes": dict(recipes=RECIPES, shots=[4], per_class=[100], match_compute=True),
        "template": dict(recipes=["vanilla", "bridged++"], shots=[4], per_class=[100],
                         templates=["single", "dsi"]),
        "volume": dict(recipes=["vanilla", "bridged++"], shots=[4], per_class=[25, 50, 100],
                       fixed_steps=FIXED_BUDGET),
        "guidance": dict(recipes=["vanilla", "bridged++"], shots=[4], per_class=[25],
                         guidances=[1, 3]),
        "scratch": dict(recipes=["vanilla"], shots=[1, 4, 16, "full"], scratch=[False, True]),
        "mixing-k4": _mixing(4),
        "synthetic-only": dict(recipes=["synthetic-only"], shots=["full"], per_class=[25, 100]),
    }},
}
HISTORY_FAMILIES = ("recipes", "paper-main", "paper-main-k4")  # for the convergence figure
HISTORY_COLUMNS = ["run", "stage", "epoch", "train_loss", "train_acc", "test_acc"]
# Used when nothing is measured yet: a line fitted to the wall_s of the first world's runs
# (mini, 2 CPU cores, no other load), 10 images/s from the synthetic sets' records.
SECONDS = {"per_run": 3.3, "per_step": 0.04, "images_per_s": 10.0, "invert_s": 120.0}


def sweep_command(profile: str, family: dict, seeds, root) -> str:
    """The `bridge sweep` command a family equals."""
    args = ["bridge", "sweep", "--profile", profile, "--recipes", *family["recipes"],
            "--shots", *map(str, family["shots"]),
            "--seeds", *map(str, family.get("seeds", seeds))]
    for flag, key in (("--per-class", "per_class"), ("--guidance", "guidances"),
                      ("--templates", "templates"), ("--gen-seeds", "gen_seeds")):
        if family.get(key):
            args += [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in family[key])]
    if family.get("fixed_steps"):
        args += ["--fixed-steps", str(family["fixed_steps"])]
    if family.get("match_compute"):
        args.append("--match-compute")
    if family.get("mixed_epochs"):
        args.append("--mixed-epochs")
    if family.get("alternate_gen_seeds"):
        args.append("--alternate-gen-seeds")
    for key, value in family.get("set", {}).items():
        args += ["--set", f"{key}={value}"]
    if True in family.get("scratch", ()):
        args.append("--with-scratch")
    args.append("--no-save-model")  # 546 classifiers would be 2.7 GB; the store keeps metrics
    return shlex.join([*args, "--out", str(root)])


def family_sweep(cfg, family: dict, seeds) -> dict:
    """The keyword arguments of `run_sweep` (and `plan_sweep`) a family equals."""
    return dict(recipes=family["recipes"], shots=family["shots"],
                seeds=family.get("seeds", seeds), per_class=family.get("per_class", ()),
                guidances=[cfg.generation.guidance if g is None else g
                           for g in family.get("guidances", [None])],
                templates=family.get("templates", ["single"]),
                scratch=family.get("scratch", [False]), gen_seeds=family.get("gen_seeds", [0]),
                fixed_steps=family.get("fixed_steps", 0),
                match_compute=family.get("match_compute", False),
                mixed_epochs=family.get("mixed_epochs", False),
                alternate_gen_seeds=family.get("alternate_gen_seeds", False))


def family_cells(cfg, family: dict, seeds) -> list:
    from bridgelib.experiments import plan_sweep
    return plan_sweep(**family_sweep(cfg, family, seeds))


def family_config(cfg, family: dict):
    """The config a family's runs train with: the build's, with the family's own settings
    (top-level fields such as precision; checked by the config's own rules)."""
    import copy
    from bridgelib.config import _set, _validate
    if not family.get("set"):
        return cfg
    cfg = copy.deepcopy(cfg)
    for key, value in family["set"].items():
        _set(cfg, key, value)
    _validate(cfg)
    return cfg


def setting_prefix(family: dict) -> str:
    """Store-name prefix of a family's runs ("fp32/" for the paper setting, "" otherwise): the
    same cell at another precision is another run, kept in its own folder."""
    return "".join(f"{v}/" for v in family.get("set", {}).values())


def family_root(root, family: dict) -> Path:
    prefix = setting_prefix(family).strip("/")
    return Path(root) if not prefix else Path(f"{root}-{prefix}")


def plan(cfg, grid: dict, root, cache=None, workers: int = 1, dest=None) -> dict:
    """Runs still to train (shared runs once; a run in --dest's store counts as done), images
    and tokens still to make, and a time estimate at `workers` processes."""
    from bridgelib.experiments import find_synthetic_set
    done = _shipped_runs(dest)
    todo, cells = [], {}
    for fam in grid["families"].values():
        froot = family_root(root, fam)
        for c in family_cells(cfg, fam, grid["seeds"]):
            name = setting_prefix(fam) + c.name
            if name in cells:
                continue
            cells[name] = c
            if name not in done and not (froot / c.name / "metrics.json").exists():
                todo.append((fam, c))
    need: dict[tuple, int] = {}
    for _, c in todo:
        if c.per_class:
            need[c.set_key] = max(need.get(c.set_key, 0), c.per_class)
    images, classes = 0, 10 if cfg.dataset == "fashion-mnist" else None
    for key, n in need.items():
        template, guidance, gen_seed = key[:3]
        cached = template != "dsi" and find_synthetic_set(
            cfg, n, template, guidance, root=Path(cache) / "synthetic" if cache else None,
            seed=gen_seed)
        images += 0 if cached else n * (classes or 0)
    tokens = {key[2:] if len(key) > 3 else key[2] for key in need if key[0] == "dsi"}
    rate = measured_rates(cfg, root)
    steps = {(setting_prefix(f), c.name): run_steps(cfg, c) for f, c in todo}
    train_s = sum(rate["per_run"] + rate["per_step"] * s for s in steps.values())
    train_s /= rate.get(f"speedup_{workers}_workers", 1.0) if workers > 1 else 1.0
    gen_s = images / rate["images_per_s"] + len(tokens) * rate["invert_s"]
    return {"runs": len(cells), "todo": len(todo), "steps": sum(steps.values()),
            "images": images, "dsi_tokens": len(tokens), "workers": workers,
            "sets": sorted(f"{k[0]} g{k[1]:g} seed {k[2]}"
                           + (f" k{k[3]} s{k[4]}" if len(k) > 3 else "") + f" {n}/class"
                           for k, n in need.items()),
            "rates": rate, "train_s": round(train_s), "generate_s": round(gen_s),
            "hours": round((train_s + gen_s) / 3600, 2)}


def _shipped_runs(dest) -> set:
    from bridgelib.store import STORE_FILE
    if dest is None or not (Path(dest) / STORE_FILE).exists():
        return set()
    return set(pd.read_csv(Path(dest) / STORE_FILE, usecols=["run"])["run"])


@functools.lru_cache
def _real_sizes(profile: str, dataset: str, data_root: str) -> tuple[list[str], int]:
    from bridgelib.config import get_config
    from bridgelib.datasets import dataset_class_names, load_dataset
    cfg = get_config(profile, dataset=dataset, data_root=data_root)
    return dataset_class_names(cfg), len(load_dataset(cfg, "train", "full"))


def run_steps(cfg, cell) -> int:
    """Optimizer steps of one run, from the recipes' own budget rules (transfer.plan_stages)."""
    import torch
    from bridgelib.data import ImageSet
    from bridgelib.splits import parse_shots
    from bridgelib.transfer import plan_stages, stage_steps
    names, pool = _real_sizes(cfg.profile, cfg.dataset, cfg.data_root)
    k = parse_shots(cell.shots)
    n_real = k * len(names) if k else pool

    def fake(n):
        return ImageSet(torch.zeros(n, 1, 1, 1, dtype=torch.uint8),
                        torch.zeros(n, dtype=torch.long), names)
    syn = fake(cell.per_class * len(names)) if cell.per_class else None
    return sum(stage_steps(s) for s in plan_stages(cell.recipe, fake(n_real), syn,
                                                   cell.config(cfg)))


def measured_rates(cfg, root) -> dict:
    """Seconds per run and per optimizer step fitted on the runs already in `root` (and its
    setting folders), the generator's images per second and an inversion's seconds from the
    cache's records, and the speed-up of 2 workers (benchmarks/bench_workers.py); else SECONDS."""
    import numpy as np
    from bridgelib.config import cache_root
    from bridgelib.experiments import Cell
    from bridgelib.manifest import set_records
    from bridgelib.store import collect_runs
    rate = dict(SECONDS)
    roots = [r for r in [Path(root), *Path(root).parent.glob(Path(root).name + "-*")]
             if r.is_dir()]
    runs = collect_runs(*roots) if roots else pd.DataFrame()
    if len(runs) >= 5:
        steps = [run_steps(cfg, Cell(r.recipe, r.shots, r.seed, int(r.per_class) or None,
                                     fixed_steps=int(getattr(r, "fixed_steps", 0) or 0)))
                 for r in runs.itertuples()]
        if len(set(steps)) > 1:
            slope, intercept = np.polyfit(steps, runs["wall_s"], 1)
            rate.update(per_step=round(float(slope), 4), per_run=round(max(float(intercept), 0), 2))
    records = [record for _, record in set_records(cache_root() / "synthetic")]
    speeds = [r.get("result", {}).get("images_per_s") for r in records]
    speeds = [s for s in speeds if s]
    if speeds:
        rate["images_per_s"] = round(statistics.median(speeds), 2)
    inversions = [json.loads(p.read_text()).get("total_train_seconds")
                  for p in (cache_root() / "dsi").glob("*/learned_embeds.json")]
    inversions = [s for s in inversions if s]
    if inversions:
        rate["invert_s"] = round(statistics.median(inversions), 1)
    bench = REPO_ROOT / "outputs" / "bench_workers.json"
    if bench.exists():
        rate["speedup_2_workers"] = json.loads(bench.read_text())["speedup"]
    return rate


def build_store(cfg, grid: dict, root, dest, cache=None, name: str = "custom",
                families=None, style_token=None, workers: int = 1) -> dict:
    """Run each family's sweep into its folder under `root`, exporting the store to `dest`
    after each family (a build killed mid-way leaves every finished family in `dest`). Runs
    already in `dest`'s store (an earlier session's) are restored into the folders first, so
    they are not trained again: the shipped store is the build's checkpoint."""
    from bridgelib.experiments import run_sweep
    root, dest = Path(root), Path(dest)
    restore_runs(cfg, grid, root, dest)
    chosen = {k: v for k, v in grid["families"].items() if not families or k in families}
    draw_sets_once(cfg, {**grid, "families": chosen}, root, cache)
    commands, t0 = [], time.time()
    every = [{"family": f, "command": family_command(cfg, fam, grid, root, style_token)}
             for f, fam in grid["families"].items()]  # what makes the whole store
    meta = {"grid": name, "provisional": name != "full", "commands": every, "ran_now": commands}
    for fam_name, fam in grid["families"].items():
        if families and fam_name not in families:
            continue
        command = family_command(cfg, fam, grid, root, style_token)
        print(f"== {fam_name}: {command}", flush=True)
        run_sweep(family_config(cfg, fam), family_root(root, fam),
                  **family_sweep(cfg, fam, grid["seeds"]), command=command, cache=cache,
                  style_token=style_token, save_model=False, workers=workers)
        commands.append({"family": fam_name, "command": command})
        export_store(cfg, grid, root, dest, {**meta, "built": time.strftime("%F %T"),
                                             "build_seconds": round(time.time() - t0)})
    return export_store(cfg, grid, root, dest, {**meta, "built": time.strftime("%F %T"),
                                                "build_seconds": round(time.time() - t0)})


def draw_sets_once(cfg, grid: dict, root, cache=None) -> list:
    """Draw each template set the grid's remaining runs need once, at the largest per_class any
    of them needs, before the first family runs (else a family needing 1,500/class draws its
    set and a later one needing 3,000 draws the first 1,500 again). DSI sets are left to the
    sweeps: they need their tokens first."""
    from bridgelib.config import cache_root
    from bridgelib.generate import cached_synthetic_set
    from bridgelib.pipeline import load_pipeline
    need: dict[tuple, tuple] = {}  # (setting, template, guidance, gen seed) -> (n, config)
    for fam in grid["families"].values():
        froot, fcfg = family_root(root, fam), family_config(cfg, fam)
        for c in family_cells(cfg, fam, grid["seeds"]):
            if (c.per_class and c.template != "dsi"
                    and not (froot / c.name / "metrics.json").exists()):
                key = (setting_prefix(fam), c.template, c.guidance, c.gen_seed)
                need[key] = (max(need.get(key, (0,))[0], c.per_class), fcfg)
    drawn, pipes = [], {}
    for (prefix, template, guidance, gen_seed), (n, fcfg) in sorted(need.items(), key=str):
        if prefix not in pipes:
            pipes[prefix] = load_pipeline(fcfg)
        drawn.append(cached_synthetic_set(
            fcfg, n, template, None, guidance, seed=gen_seed, pipe=pipes[prefix],
            root=(Path(cache) if cache else cache_root()) / "synthetic"))
    return drawn


def family_command(cfg, fam: dict, grid: dict, root, style_token=None) -> str:
    return sweep_command(cfg.profile, fam, grid["seeds"], family_root(root, fam)) + \
        (f" --style-token {shlex.quote(str(style_token))}" if style_token and
         "dsi" in fam.get("templates", ()) else "")


def restore_runs(cfg, grid: dict, root, dest) -> int:
    """Write each run of `dest`'s store that its family folder lacks back as a run folder
    (metrics.json, and history.csv where the store keeps one), marked restored; returns how
    many. A sweep then counts it as done, and the next export carries it."""
    from bridgelib.files import atomic_write_bytes, write_json
    from bridgelib.store import STORE_FILE, read_histories, read_store
    if not (Path(dest) / STORE_FILE).exists():
        return 0
    shipped = read_store(dest).set_index("run")
    histories = read_histories(dest)
    restored = 0
    for fam in grid["families"].values():
        prefix, froot = setting_prefix(fam), family_root(root, fam)
        for c in family_cells(cfg, fam, grid["seeds"]):
            name = prefix + c.name
            if name not in shipped.index or (froot / c.name / "metrics.json").exists():
                continue
            row = shipped.loc[name]
            history = histories[histories["run"] == name].drop(columns="run")
            if len(history):
                atomic_write_bytes(froot / c.name / "history.csv",
                                   history.to_csv(index=False).encode())
            write_json(froot / c.name / "metrics.json", row_to_metrics(row))
            restored += 1
    return restored


def row_to_metrics(row: pd.Series) -> dict:
    """A store row as the metrics.json `store.collect_runs` reads back into the same row."""
    m = {k: (None if isinstance(v, float) and v != v else v.item() if hasattr(v, "item") else v)
         for k, v in row.items() if k not in ("syn_per_real", "per_class", "scratch")}
    per_class = row.get("per_class")
    m["per_class"] = 0 if pd.isna(per_class) else int(per_class)
    m["pretrained"] = not bool(row.get("scratch", False))
    m["leep"] = {k[len("leep_"):]: m.pop(k) for k in list(m) if k.startswith("leep_")
                 and k != "leep_estimate"}
    m["restored_from_store"] = True
    return m


def export_store(cfg, grid: dict, root, dest, meta: dict) -> dict:
    """results.csv (the grid's runs), histories.csv (HISTORY_FAMILIES) and store.json."""
    from bridgelib.store import (HISTORY_FILE, META_FILE, STORE_COLUMNS, STORE_FILE,
                                 collect_histories, collect_runs, tidy_runs)
    from bridgelib.files import atomic_write_bytes, write_json
    from bridgelib.pipeline import model_fingerprint
    root, dest = Path(root), Path(dest)
    names, parts, hist_parts = set(), [], []
    for fam_name, fam in grid["families"].items():
        prefix, froot = setting_prefix(fam), family_root(root, fam)
        cells = {c.name for c in family_cells(cfg, fam, grid["seeds"])}
        names |= {prefix + n for n in cells}
        if not froot.is_dir():
            continue
        runs = tidy_runs(collect_runs(froot))
        if not runs.empty:
            runs = runs[runs["run"].isin(cells)]
            parts.append(runs.assign(run=prefix + runs["run"]))
        if fam_name in HISTORY_FAMILIES:
            h = collect_histories(froot, runs=cells)
            hist_parts.append(h.assign(run=prefix + h["run"]))
    store = pd.concat(parts, ignore_index=True) if parts else tidy_runs(pd.DataFrame())
    store = store.drop_duplicates("run").sort_values("run", ignore_index=True)
    store = store.drop(columns=[c for c in ("restored_from_store",) if c in store])
    store = store[[c for c in STORE_COLUMNS if c in store] + [c for c in store if c not in
                                                              STORE_COLUMNS]]
    histories = (pd.concat(hist_parts, ignore_index=True).drop_duplicates(["run", "stage", "epoch"])
                 if hist_parts else pd.DataFrame(columns=HISTORY_COLUMNS))
    histories = histories[[c for c in HISTORY_COLUMNS if c in histories]].round(4)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / STORE_FILE, store.round(6).to_csv(index=False).encode())
    atomic_write_bytes(dest / HISTORY_FILE, histories.to_csv(index=False).encode())
    missing = sorted(names - set(store["run"]))
    meta = {**meta, "provisional": meta["provisional"] or bool(missing),  # a partial build too
            "profile": cfg.profile, "dataset": cfg.dataset, "runs": len(store),
            "missing_runs": missing,
            "generator": cfg.generation.model.replace(str(REPO_ROOT) + "/", ""),
            "generator_fingerprint": model_fingerprint(cfg.generation.model),
            "seeds": grid["seeds"], "families": grid["families"]}
    write_json(dest / META_FILE, meta)  # store.describe_store reads it
    atomic_write_bytes(dest / "README.md", readme(meta).encode())
    sizes = {p.name: p.stat().st_size for p in dest.iterdir() if p.is_file()}
    print(f"wrote {dest}: {len(store)} runs, {len(missing)} missing, "
          f"{sum(sizes.values()) / 1024:.0f} KiB {sizes}", flush=True)
    return meta


def readme(meta: dict) -> str:
    """What the store folder holds, for someone browsing data/."""
    status = ("the full grid of `make results`" if not meta["provisional"] else
              f"PROVISIONAL: {len(meta['missing_runs'])} runs of the {meta['grid']!r} grid are "
              f"missing (rerun the build to add them)" if meta["missing_runs"] else
              f"PROVISIONAL: the small {meta['grid']!r} grid, standing in until `make results`")
    commands = "\n".join(f"    {c['command']}" for c in meta["commands"])
    return f"""# Results store ({meta['profile']} profile, {meta['dataset']})

{status}; built {meta['built']} with generator weights {meta['generator_fingerprint']}.
Written by `tools/build_results_store.py --grid {meta['grid']}`; read by notebooks 01 and 03-06
and by `bridge report --runs data/results/store --out DIR`.

- `results.csv`: one row per run. Config: run, recipe, shots, seed (training seed and k-shot
  subset), per_class (synthetic images per class; empty for vanilla), guidance, template,
  gen_seed (the synthetic set's and its DSI token's seed), fixed_steps (the synthetic stage's
  fixed step budget; 0: its epochs), match_compute (true for the vanilla trained as many steps
  as bridged at that per_class), scratch, profile, dataset. Metrics: test_acc, leep_pretrained,
  leep_after_synthetic, train_images, synthetic_images, syn_per_real (the mixing ratio:
  synthetic images per real image in the training data), wall_s, n_test, n_classes; synthetic
  names the folder trained on.
- `histories.csv`: per-epoch history (stage, epoch, train_loss, train_acc, test_acc) of the
  runs of the recipes family, for the convergence figure.
- `store.json`: the grid, the sweeps that made it, runs missing from the grid.

The sweeps (one per figure family, all into one folder so shared runs train once):

{commands}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", choices=sorted(GRIDS), default="full")
    p.add_argument("--families", nargs="+", choices=list(GRIDS["full"]["families"]))
    p.add_argument("--seeds", nargs="+", type=int, help="override the grid's seeds")
    p.add_argument("--profile", default="mini")
    p.add_argument("--root", help="folder of runs (default: cache/sweeps/store, or "
                   "cache/sweeps/store-<grid> for a grid other than full)")
    p.add_argument("--dest", default=str(REPO_ROOT / "data" / "results" / "store"))
    p.add_argument("--style-token", help="DSI token file (default: learned once per generator)")
    p.add_argument("--plan", action="store_true", help="print the plan and estimate; run nothing")
    p.add_argument("--export", action="store_true", help="train nothing: copy the runs finished "
                   "so far to --dest (marked provisional while runs are missing)")
    p.add_argument("--workers", type=int, default=1, help="train runs in N processes "
                   "(benchmarks/bench_workers.py measures 1 vs 2 on this machine)")
    args = p.parse_args(argv)
    args.root = args.root or str(REPO_ROOT / "cache" / "sweeps" /
                                 ("store" if args.grid == "full" else f"store-{args.grid}"))
    from bridgelib.config import get_config
    cfg = get_config(args.profile)
    grid = {**GRIDS[args.grid], **({"seeds": args.seeds} if args.seeds else {})}
    chosen = {k: v for k, v in grid["families"].items() if not args.families or k in args.families}
    estimate = plan(cfg, {**grid, "families": chosen}, args.root, workers=args.workers,
                    dest=args.dest)
    for fam in chosen.values():
        print(family_command(cfg, fam, grid, args.root))
    print(json.dumps(estimate, indent=2), flush=True)
    if args.export:
        every = [{"family": f, "command": family_command(cfg, fam, grid, args.root)}
                 for f, fam in grid["families"].items()]
        restore_runs(cfg, grid, Path(args.root), Path(args.dest))
        export_store(cfg, grid, Path(args.root), Path(args.dest),
                     {"grid": args.grid, "provisional": args.grid != "full",
                      "built": time.strftime("%F %T"), "build_seconds": None, "commands": every,
                      "ran_now": []})
    elif not args.plan:
        build_store(cfg, grid, args.root, args.dest, name=args.grid, families=args.families,
                    style_token=args.style_token, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
