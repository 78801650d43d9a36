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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

RECIPES = ["vanilla", "mixed", "bridged", "bridged-reinit", "bridged++"]  # the transfer recipes
SHOTS = [1, 2, 4, 8, 16, "full"]
SEEDS = [0, 1, 2, 3, 4]          # training seeds of every claim's setting
DEFAULT_BUDGET = 125             # synthetic-stage steps of the default volume (200/class, 4 epochs)


def _mixing(k) -> dict:
    """One row of the mixing map: mixed at shots k, at each real share of MIX_RATIOS."""
    from bridgelib.mini.fashion import POOL_PER_CLASS
    from bridgelib.claims import MIX_RATIOS  # 1 : 1, 4 : 1 and the paper's 15 : 1 and 24 : 1
    per_class = POOL_PER_CLASS if k == "full" else k
    return dict(recipes=["vanilla", "mixed"], shots=[k], volumes=[per_class * r for r in MIX_RATIOS])


# The figure families, in the order they are built: the claims' settings first (a build cut
# short still tests most claims), the paper's mixing ratio early because its 2,400/class set is
# the longest to draw; the families at 3 seeds last. Each runs SEEDS unless it says otherwise;
# "gen_seeds" [0, 1] puts generation noise (a second set, a second DSI token) into the claims
# that depend on the images drawn (volume, guidance, DSI).
GRIDS = {
    "full": {"seeds": SEEDS, "families": {
        # Every recipe at every shot setting (the radar, the ablation order, the convergence
        # histories), beside a vanilla trained as many steps as bridged (the fair-budget control).
        "recipes": dict(recipes=RECIPES, shots=SHOTS, volumes=[200], match_compute=True),
        # The mixing map's full-pool row: the paper's 15 : 1 and 24 : 1, compute-matched too.
        "mixing-full": {**_mixing("full"), "match_compute": True},
        # More images at a fixed synthetic-stage budget: more data, not more training.
        "volume": dict(recipes=["vanilla", "bridged++"], shots=[4, "full"],
                       volumes=[25, 50, 100, 200, 400], gen_seeds=[0, 1],
                       fixed_steps=DEFAULT_BUDGET),
        "template": dict(recipes=["vanilla", "bridged++"], shots=[4, "full"], volumes=[200],
                         templates=["single", "dsi"], gen_seeds=[0, 1]),
        "guidance": dict(recipes=["vanilla", "bridged++"], shots=[4], volumes=[100],
                         guidances=[1, 2, 3, 5, 7.5], gen_seeds=[0, 1]),
        # What the generator alone teaches (no real image seen), at every volume of the study.
        "synthetic-only": dict(recipes=["synthetic-only"], shots=["full"],
                               volumes=[25, 50, 100, 200, 400, 1500, 2400]),
        # The rest of the mixing map: shots x real share.
        **{f"mixing-k{k}": _mixing(k) for k in [16, 4, 1]},
        # Volume at the recipes' own epoch budgets (more data is also more training), 3 seeds.
        "volume-epochs": dict(recipes=["vanilla", "mixed", "bridged", "bridged++"], shots=[4],
                              volumes=[25, 50, 100, 200, 400], seeds=[0, 1, 2]),
        # Pretrained vs random initialisation (notebook 01), 3 seeds.
        "scratch": dict(recipes=["vanilla"], shots=SHOTS, scratch=[False, True], seeds=[0, 1, 2]),
    }},
    # A stand-in until the full store is built: one seed and the fewest runs that still draw
    # every figure (small sets on top of notebook 03/04's cached ones).
    "provisional": {"seeds": [0], "families": {
        "recipes": dict(recipes=RECIPES, shots=[4], volumes=[100], match_compute=True),
        "template": dict(recipes=["vanilla", "bridged++"], shots=[4], volumes=[100],
                         templates=["single", "dsi"]),
        "volume": dict(recipes=["vanilla", "bridged++"], shots=[4], volumes=[25, 50, 100],
                       fixed_steps=DEFAULT_BUDGET),
        "guidance": dict(recipes=["vanilla", "bridged++"], shots=[4], volumes=[25],
                         guidances=[1, 3]),
        "scratch": dict(recipes=["vanilla"], shots=[1, 4, 16, "full"], scratch=[False, True]),
        "mixing-k4": _mixing(4),
        "synthetic-only": dict(recipes=["synthetic-only"], shots=["full"], volumes=[25, 100]),
    }},
}
HISTORY_FAMILY = "recipes"
HISTORY_COLUMNS = ["run", "stage", "epoch", "train_loss", "train_acc", "test_acc"]
# Used when nothing is measured yet: a line fitted to the wall_s of the first world's runs
# (mini, 2 CPU cores, no other load), 10 images/s from run.json.
SECONDS = {"per_run": 3.3, "per_step": 0.04, "images_per_s": 10.0}


def sweep_command(profile: str, family: dict, seeds, root) -> str:
    """The `bridge sweep` command a family equals."""
    args = ["bridge", "sweep", "--profile", profile, "--recipes", *family["recipes"],
            "--shots", *map(str, family["shots"]),
            "--seeds", *map(str, family.get("seeds", seeds))]
    for flag, key in (("--volumes", "volumes"), ("--guidance", "guidances"),
                      ("--templates", "templates"), ("--gen-seeds", "gen_seeds")):
        if family.get(key):
            args += [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in family[key])]
    if family.get("fixed_steps"):
        args += ["--fixed-steps", str(family["fixed_steps"])]
    if family.get("match_compute"):
        args.append("--match-compute")
    if True in family.get("scratch", ()):
        args.append("--with-scratch")
    args.append("--no-save-model")  # 546 classifiers would be 2.7 GB; the store keeps metrics
    return shlex.join([*args, "--out", str(root)])


def family_sweep(cfg, family: dict, seeds) -> dict:
    """The keyword arguments of `run_sweep` (and `plan_sweep`) a family equals."""
    return dict(recipes=family["recipes"], shots=family["shots"],
                seeds=family.get("seeds", seeds), volumes=family.get("volumes", ()),
                guidances=[cfg.generation.guidance if g is None else g
                           for g in family.get("guidances", [None])],
                templates=family.get("templates", ["single"]),
                scratch=family.get("scratch", [False]), gen_seeds=family.get("gen_seeds", [0]),
                fixed_steps=family.get("fixed_steps", 0),
                match_compute=family.get("match_compute", False))


def family_cells(cfg, family: dict, seeds) -> list:
    from bridgelib.experiments import plan_sweep
    return plan_sweep(**family_sweep(cfg, family, seeds))


def plan(cfg, grid: dict, root, cache=None) -> dict:
    """Runs still to train (shared runs once), images still to generate, and a time estimate."""
    from bridgelib.experiments import find_synthetic_set
    root = Path(root)
    cells = {c.name: c for fam in grid["families"].values()
             for c in family_cells(cfg, fam, grid["seeds"])}
    todo = [c for c in cells.values() if not (root / c.name / "metrics.json").exists()]
    need: dict[tuple, int] = {}
    for c in todo:
        if c.volume:
            key = (c.template, c.guidance, c.gen_seed)
            need[key] = max(need.get(key, 0), c.volume)
    images, classes = 0, 10 if cfg.dataset == "fashion-mnist" else None
    for (template, guidance, gen_seed), n in need.items():
        cached = template != "dsi" and find_synthetic_set(
            cfg, n, template, guidance, root=Path(cache) / "synthetic" if cache else None,
            seed=gen_seed)
        images += 0 if cached else n * (classes or 0)
    rate = measured_rates(cfg, root)
    steps = {c.name: run_steps(cfg, c) for c in todo}
    train_s = sum(rate["per_run"] + rate["per_step"] * s for s in steps.values())
    gen_s = images / rate["images_per_s"]
    return {"runs": len(cells), "todo": len(todo), "steps": sum(steps.values()),
            "images": images,
            "sets": sorted(f"{t} g{g:g} seed {s} {n}/class" for (t, g, s), n in need.items()),
            "dsi_token": any(t == "dsi" for t, _, _ in need), "rates": rate,
            "train_s": round(train_s), "generate_s": round(gen_s)}


@functools.lru_cache
def _real_sizes(profile: str, dataset: str, data_root: str) -> tuple[list[str], int]:
    from bridgelib.config import get_config
    from bridgelib.datasets import load_dataset
    cfg = get_config(profile, dataset=dataset, data_root=data_root)
    return load_dataset(cfg, "test").class_names, len(load_dataset(cfg, "train", "full"))


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
    syn = fake(cell.volume * len(names)) if cell.volume else None
    return sum(stage_steps(s) for s in plan_stages(cell.recipe, fake(n_real), syn,
                                                   cell.config(cfg)))


def measured_rates(cfg, root) -> dict:
    """Seconds per run and per optimizer step fitted on the runs already in `root`, and the
    generator's images per second from the cached sets' run.json (else SECONDS)."""
    import numpy as np
    from bridgelib.config import REPO_ROOT as repo
    from bridgelib.experiments import Cell
    from bridgelib.store import collect_runs
    rate = dict(SECONDS)
    runs = collect_runs(root)
    if len(runs) >= 5:
        steps = [run_steps(cfg, Cell(r.recipe, r.shots, r.seed, int(r.synthetic_per_class) or None))
                 for r in runs.itertuples()]
        if len(set(steps)) > 1:
            slope, intercept = np.polyfit(steps, runs["wall_s"], 1)
            rate.update(per_step=round(float(slope), 4), per_run=round(max(float(intercept), 0), 2))
    speeds = [json.loads(p.read_text()).get("result", {}).get("images_per_s")
              for p in (repo / "cache" / "synthetic").glob("*/run.json")]
    speeds = [s for s in speeds if s]
    if speeds:
        rate["images_per_s"] = round(statistics.median(speeds), 2)
    return rate


def build_store(cfg, grid: dict, root, dest, cache=None, name: str = "custom",
                families=None, style_token=None) -> dict:
    """Run each family's sweep into `root`, then copy the compact store to `dest`."""
    from bridgelib.experiments import run_sweep
    root, dest = Path(root), Path(dest)
    commands, t0 = [], time.time()
    for fam_name, fam in grid["families"].items():
        if families and fam_name not in families:
            continue
        command = sweep_command(cfg.profile, fam, grid["seeds"], root) + \
            (f" --style-token {shlex.quote(str(style_token))}" if style_token and
             "dsi" in fam.get("templates", ()) else "")
        print(f"== {fam_name}: {command}", flush=True)
        run_sweep(cfg, root, **family_sweep(cfg, fam, grid["seeds"]), command=command,
                  cache=cache, style_token=style_token, save_model=False)
        commands.append({"family": fam_name, "command": command})
    every = [{"family": f, "command": sweep_command(cfg.profile, fam, grid["seeds"], root)}
             for f, fam in grid["families"].items()]  # what makes the whole store
    meta = {"grid": name, "provisional": name != "full", "built": time.strftime("%F %T"),
            "build_seconds": round(time.time() - t0), "commands": every, "ran_now": commands}
    return export_store(cfg, grid, root, dest, meta)


def export_store(cfg, grid: dict, root, dest, meta: dict) -> dict:
    """results.csv (the grid's runs), histories.csv (the recipes family) and store.json."""
    from bridgelib.store import HISTORY_FILE, STORE_FILE, collect_histories, write_store
    from bridgelib.files import atomic_write_bytes, write_json
    from bridgelib.pipeline import model_fingerprint
    names = {c.name for fam in grid["families"].values()
             for c in family_cells(cfg, fam, grid["seeds"])}
    store = write_store(root)
    store = store[store["run"].isin(names)].sort_values("run", ignore_index=True)
    history_family = grid["families"].get(HISTORY_FAMILY)
    history_runs = {c.name for c in family_cells(cfg, history_family, grid["seeds"])} \
        if history_family else set()
    histories = collect_histories(root, runs=history_runs)
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
    write_json(dest / "store.json", meta)
    atomic_write_bytes(dest / "README.md", readme(meta).encode())
    sizes = {p.name: p.stat().st_size for p in dest.iterdir() if p.is_file()}
    print(f"wrote {dest}: {len(store)} runs, {sum(sizes.values()) / 1024:.0f} KiB {sizes}")
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
  subset), volume (synthetic images per class; empty for vanilla), guidance, template,
  gen_seed (the synthetic set's and its DSI token's seed), fixed_steps (the synthetic stage's
  fixed step budget; 0: its epochs), match_compute (true for the vanilla trained as many steps
  as bridged at that volume), scratch, profile, dataset. Metrics: test_acc, leep_pretrained,
  leep_after_synthetic, train_images, synthetic_images, syn_per_real (synthetic images per real
  image in the training data), wall_s, n_test, n_classes; synthetic names the folder trained on.
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
    args = p.parse_args(argv)
    args.root = args.root or str(REPO_ROOT / "cache" / "sweeps" /
                                 ("store" if args.grid == "full" else f"store-{args.grid}"))
    from bridgelib.config import get_config
    cfg = get_config(args.profile)
    grid = {**GRIDS[args.grid], **({"seeds": args.seeds} if args.seeds else {})}
    chosen = {k: v for k, v in grid["families"].items() if not args.families or k in args.families}
    estimate = plan(cfg, {**grid, "families": chosen}, args.root)
    for fam in chosen.values():
        print(sweep_command(cfg.profile, fam, grid["seeds"], args.root))
    print(json.dumps(estimate, indent=2))
    if args.export:
        every = [{"family": f, "command": sweep_command(cfg.profile, fam, grid["seeds"], args.root)}
                 for f, fam in grid["families"].items()]
        export_store(cfg, grid, Path(args.root), Path(args.dest),
                     {"grid": args.grid, "provisional": args.grid != "full",
                      "built": time.strftime("%F %T"), "build_seconds": None, "commands": every,
                      "ran_now": []})
    elif not args.plan:
        build_store(cfg, grid, args.root, args.dest, name=args.grid, families=args.families,
                    style_token=args.style_token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
