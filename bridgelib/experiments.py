"""Grids of training runs: run what is missing, skip what is on disk, keep one tidy results store.

A sweep is the grid recipes x shots x seeds x synthetic images per class (`per_class`) x guidance x
template (single | dsi) x generation seed [x scratch]. Each cell is one `train_run` in
`root/<cell name>/`; a cell whose metrics.json exists is never recomputed, so an interrupted sweep
resumes where it stopped and a finished one reruns in seconds. Vanilla uses no synthetic images,
so one vanilla run serves every `per_class`, guidance and template of its (shots, seed); its
compute-matched twin (`match_compute`) trains as many steps as bridged would at each `per_class`.

Synthetic sets are never recomputed either: one set per (template, guidance, generation seed) at
the largest `per_class` still needed (the package's cached set, `cache/synthetic/` or
`$BRIDGELIB_CACHE/synthetic/`, reused when one with the same options is big enough), and every
smaller `per_class` is the first N images per class of it.

After every run `root/results.csv` (the store: one row per run, config then metrics columns,
`bridgelib.store`) is rewritten atomically; `pd.read_csv` reads it as is.

Taught in notebooks 01, 03, 05.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bridgelib.config import Config, cache_root, check_value
from bridgelib.files import append_bytes, progress, progress_enabled, write_json
from bridgelib.generate import cached_synthetic_set, generation_options
from bridgelib.invert import cached_style_token
from bridgelib.manifest import complete_per_class, find_set, read_options, synthetic_subset
from bridgelib.pipeline import load_pipeline, model_fingerprint, read_style_token
from bridgelib.prompts import TEMPLATES
from bridgelib.splits import parse_shots
from bridgelib.store import STORE_FILE, write_store
from bridgelib.transfer import RECIPES, train_run

# ---------------------------------------------------------------- the cells of a grid
@dataclass(frozen=True)
class Cell:
    """One run of a sweep; `per_class` None means no synthetic data (plain vanilla)."""
    recipe: str
    shots: int | str
    seed: int                      # training seed (and the k-shot subset's)
    per_class: int | None = None   # synthetic images per class
    guidance: float | None = None
    template: str | None = None
    scratch: bool = False          # random initialisation instead of the pretrained backbone
    gen_seed: int = 0              # seed of the synthetic set (and of its DSI token)
    fixed_steps: int = 0           # synthetic stage of exactly this many steps; 0: its epochs
    match_compute: bool = False    # vanilla only: as many steps as bridged at this per_class
    mixed_epochs: bool = False     # mixed only: vanilla's epochs over the union (train.mixed_budget)

    @property
    def name(self) -> str:
        data = (f"-{self.template}-g{self.guidance:g}-n{self.per_class}"
                + (f"-gen{self.gen_seed}" if self.gen_seed else "")
                + (f"-steps{self.fixed_steps}" if self.fixed_steps else "")
                + ("-epochs" if self.mixed_epochs else "")) if self.per_class else ""
        recipe = "vanilla-matched" if self.match_compute else self.recipe
        return (f"{recipe}{data}-k{self.shots}-s{self.seed}"
                + ("-scratch" if self.scratch else ""))

    def config(self, cfg: Config) -> Config:
        """The sweep's config with this cell's own training-budget settings."""
        if not (self.fixed_steps or self.match_compute or self.mixed_epochs):
            return cfg
        train = replace(cfg.train, match_compute=self.match_compute,
                        synthetic=replace(cfg.train.synthetic, steps=self.fixed_steps or None),
                        mixed_budget="epochs" if self.mixed_epochs else cfg.train.mixed_budget)
        return replace(cfg, train=train)

    @property
    def own_token(self) -> bool:
        """A DSI cell at k shots learns its token on its own k-shot subset (shots and seed):
        a k-shot arm never sees more than k real images per class, the token included."""
        return self.template == "dsi" and self.shots != "full"

    @property
    def set_key(self) -> tuple:
        """Which synthetic set the cell trains on: one per (template, guidance, generation
        seed), and per k-shot subset where the set is drawn with that subset's own token."""
        key = (self.template, self.guidance, self.gen_seed)
        return key + ((self.shots, self.seed) if self.own_token else ())


def plan_sweep(recipes=("vanilla",), shots=(4,), seeds=(0,), per_class=(), guidances=(3.0,),
               templates=("single",), scratch=(False,), gen_seeds=(0,), fixed_steps=0,
               match_compute=False, mixed_epochs=False, alternate_gen_seeds=False) -> list[Cell]:
    """Every cell of the grid, once (`per_class`: a list of synthetic images per class): vanilla
    collapses over per_class, guidance, template and generation seed. `fixed_steps`: every
    synthetic stage trains exactly that many steps (more images, not more training).
    `match_compute`: beside each plain vanilla, a vanilla that trains as many steps as bridged
    at each `per_class` (the fair-budget control).
    `alternate_gen_seeds`: training seed s trains on generation seed gen_seeds[s % len] only,
    instead of on every generation seed: each vanilla run then pairs with one run of each other
    recipe (independent pairs, none counted twice) while both kinds of noise still vary."""
    bad = [r for r in recipes if r not in RECIPES]
    if bad:
        raise ValueError(f"unknown recipe {bad[0]!r}; valid: {', '.join(RECIPES)}")
    bad = [t for t in templates if t not in TEMPLATES]
    if bad:
        raise ValueError(f"unknown template {bad[0]!r}; valid: {', '.join(TEMPLATES)}")
    for v in per_class:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"per_class={v!r} is invalid; expected a positive number of images "
                             f"per class")
    if fixed_steps != 0:  # 0: the stage's own epochs
        check_value("fixed_steps", fixed_steps, "train.synthetic.steps")
    for g in guidances:
        check_value("guidance", g, "generation.guidance")
    for g in gen_seeds:
        check_value("gen_seed", g, "seed")
    if match_compute and not per_class:
        raise ValueError("match_compute needs per_class: the matched vanilla trains as many steps "
                         "as bridged would on that many synthetic images per class")
    shots = [parse_shots(k) or "full" for k in shots]
    cells: dict[str, Cell] = {}
    data = list(itertools.product(per_class, [float(g) for g in guidances], templates,
                                  [int(g) for g in gen_seeds]))
    for recipe, k, seed, s in itertools.product(recipes, shots, seeds, scratch):
        seed_data = [d for d in data if not alternate_gen_seeds
                     or d[3] == int(gen_seeds[int(seed) % len(gen_seeds)])]
        if recipe != "vanilla" and not per_class:
            raise ValueError(f"recipe {recipe!r} needs synthetic images: give per_class (images "
                             f"per class, --per-class N ...) or a synthetic set (--synthetic DIR)")
        if recipe == "vanilla":
            cells.setdefault((c := Cell(recipe, k, int(seed), scratch=bool(s))).name, c)
            if not match_compute:
                continue
        for v, g, t, gs in seed_data:
            cell = Cell(recipe, k, int(seed), v, g, t, bool(s), gs,
                        0 if recipe == "vanilla" else fixed_steps, recipe == "vanilla",
                        mixed_epochs and recipe == "mixed")
            cells.setdefault(cell.name, cell)
    return list(cells.values())


# ---------------------------------------------------------------- running a sweep
def run_sweep(cfg: Config, root: str | Path, recipes=("vanilla",), shots=(4,), seeds=(0,),
              per_class=(), guidances=(None,), templates=("single",), scratch=(False,),
              gen_seeds=(0,), fixed_steps=0, match_compute=False,
              synthetic_dir=None, style_token=None, command: str | None = None,
              cache: str | Path | None = None, save_model: bool = True,
              token: str | None = None, mixed_epochs: bool = False,
              workers: int = 1, alternate_gen_seeds: bool = False) -> pd.DataFrame:
    """Train every cell of the grid not already in `root`; return this grid's rows of the store.

    guidance None is the profile's default. `synthetic_dir`: use this set (its own template and
    guidance; per_class defaults to its size) instead of generating. `style_token`: the DSI token
    (default: the package's cached one, learned once per generation seed); `token`: the word
    prompts use for it, instead of the file's (as `generate_synthetic_set`). Generation and
    training seeds are apart: the synthetic sets and tokens are drawn with each seed of
    `gen_seeds`, and every training seed trains on the same images of a generation seed (or, with
    `alternate_gen_seeds`, seed s on gen_seeds[s % len] alone: see `plan_sweep`). `cache`:
    where generated sets and the token are cached (default: the repository's cache/, shared
    with the notebooks). save_model=False keeps no run's classifier (5 MB a run in mini).
    A DSI cell at k shots uses a token learned on its own k-shot subset (`Cell.own_token`).
    `workers` > 1: the synthetic sets and tokens are made first, in this process, then the runs
    train in that many worker processes, each with its share of the CPU's cores (a run's result
    does not depend on which process trains it, only, by float rounding, on its thread count:
    tests/test_experiments.py checks it at one thread).
    """
    root = Path(root)
    if synthetic_dir is not None:
        options, size = read_options(synthetic_dir), complete_per_class(synthetic_dir)
        guidances, templates = [options["guidance_scale"]], [options["template"]]
        per_class = per_class or [size]
    guidances = [cfg.generation.guidance if g is None else g for g in guidances]
    cells = plan_sweep(recipes, shots, seeds, per_class, guidances, templates, scratch, gen_seeds,
                       fixed_steps, match_compute, mixed_epochs, alternate_gen_seeds)
    check_value("workers", workers, "generation.batch_size")  # a positive integer
    check_sweep_folder(cfg, root)
    read_style_token(style_token, token)  # a bad token file: refused before the first run trains
    todo = [c for c in cells if not (root / c.name / "metrics.json").exists()]
    append_bytes(root / "sweeps.jsonl",  # provenance: which command asked for what
                 (json.dumps({"command": command or _command(), "time": time.strftime("%F %T"),
                              "cells": len(cells), "todo": len(todo)}) + "\n").encode())
    sets = SyntheticSets(cfg, root / "synthetic", synthetic_dir, style_token, todo, cache,
                         token)
    if workers == 1:
        for cell in progress(todo, desc="runs"):
            _train_cell(cfg, cell, root, sets.folder(cell) if cell.per_class else None, save_model)
            write_store(root)
    else:
        jobs = [(cfg, c, root, sets.folder(c) if c.per_class else None, save_model) for c in todo]
        _train_in_workers(jobs, workers, root)
    store = write_store(root)
    return store[store["run"].isin([c.name for c in cells])].reset_index(drop=True)


def _train_cell(cfg: Config, cell: Cell, root: Path, data, save_model: bool) -> str:
    train_run(cell.config(cfg), cell.recipe, root / cell.name, shots=cell.shots, seed=cell.seed,
              pretrained=not cell.scratch, synthetic_dir=data, save_model=save_model)
    return cell.name


def _train_in_workers(jobs: list[tuple], workers: int, root: Path) -> None:
    """Train `jobs` (`_train_cell` arguments) in `workers` fresh processes; the store is
    rewritten after each run, so an interrupted sweep resumes as the one-process loop does."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // workers)
    init = dict(initializer=_worker_init, initargs=(threads, progress_enabled()))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             **init) as pool:
        pending = {pool.submit(_train_cell, *job) for job in jobs}
        bar = progress(total=len(jobs), desc="runs")
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # a failed run stops the sweep with its own error
                write_store(root)
                bar.update(1)
        bar.close()


def _worker_init(threads: int, bars: bool) -> None:
    """A worker process's PyTorch threads (its share of the cores: files.share_cpu reads it)
    and progress bars (off when the sweep's are: a fresh process starts with them on)."""
    from bridgelib.files import THREADS_ENV, set_progress
    os.environ[THREADS_ENV] = str(threads)
    set_progress(bars)


def sweep_identity(cfg: Config) -> dict:
    """What a finished run depends on beyond its cell: the resolved config, with the generator
    and the backbone named by a hash of their weights (a rebuilt mini world is another world)."""
    d = cfg.to_dict()
    d["generation"]["model"] = model_fingerprint(cfg.generation.model) or cfg.generation.model
    d["backbone_weights"] = model_fingerprint(cfg.backbone_weights) or cfg.backbone_weights
    for key in ("device", "num_workers", "data_root", "download"):  # where and how, not what
        d.pop(key, None)
    for key in ("batch_size", "compile"):  # the same images up to float rounding
        d["generation"].pop(key, None)
    return d


def sweep_folder(cfg: Config, base: str | Path) -> Path:
    """`base/<profile>-<hash of sweep_identity>`: a folder of runs that a rebuilt generator,
    backbone or changed config never reuses (notebooks keep their live sweeps here)."""
    digest = hashlib.sha256(json.dumps(sweep_identity(cfg), sort_keys=True).encode()).hexdigest()
    return Path(base) / f"{cfg.profile}-{digest[:8]}"


def check_sweep_folder(cfg: Config, root: str | Path) -> None:
    """Refuse to add runs to a folder whose runs were made with another setup (else a finished
    cell from an older generator would count as done); record the setup on first use."""
    root, ident = Path(root), json.loads(json.dumps(sweep_identity(cfg), default=str))
    path = root / "sweep.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = next((k for k in _flat(ident) if _flat(old).get(k) != _flat(ident)[k]), None)
        if diff:
            raise ValueError(f"{str(root)!r} holds runs made with another setup ({diff}: "
                             f"{_flat(old).get(diff)!r}, now {_flat(ident)[diff]!r}); sweep "
                             f"into another folder")
    elif any(root.glob("*/metrics.json")):
        return  # runs made before sweep.json existed: nothing to compare with
    elif (root / STORE_FILE).exists():  # a results.csv no sweep here wrote: never replace it
        raise FileExistsError(f"{str(root)!r} holds a {STORE_FILE} but no sweep's runs; sweep "
                              f"into another folder (nothing was changed)")
    else:
        write_json(path, ident)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


class SyntheticSets:
    """The synthetic folder of each cell, made only when a cell that needs it runs.

    One source set per (template, guidance), at the largest `per_class` the cells still to run
    need; smaller ones are `synthetic_subset`s of it under `subsets/`. The pipeline loads at
    most once, and only if something must be generated or a style token learned.
    """

    def __init__(self, cfg: Config, subsets: Path, given=None, style_token=None, todo=(),
                 cache: str | Path | None = None, token: str | None = None):
        self.cfg, self.subsets, self.given, self.token = cfg, Path(subsets), given, style_token
        self.word = token  # the word prompts use for a given token file (None: the file's)
        self.cache = Path(cache) if cache else cache_root()
        self.need: dict[tuple, int] = {}
        for c in todo:
            if c.per_class:
                self.need[c.set_key] = max(self.need.get(c.set_key, 0), c.per_class)
        self.sources: dict[tuple, Path] = {}
        self.tokens: dict[tuple, Path] = {}
        self._pipe = None

    def pipe(self):
        if self._pipe is None:
            self._pipe = load_pipeline(self.cfg)
        return self._pipe

    def style_token(self, gen_seed: int = 0, shots="full", seed: int | None = None):
        """The given token, else the package's cached one: on the whole pool, one per
        generation seed (a second seed is a second token, so its noise enters the DSI claim);
        at k shots, one per k-shot subset, learned on that subset alone (`seed`: its seed)."""
        if self.token is not None:
            return self.token
        key = (gen_seed,) if shots == "full" else (shots, seed)
        if key not in self.tokens:
            self.tokens[key] = cached_style_token(
                self.cfg, shots=shots, seed=gen_seed if shots == "full" else seed,
                pipe=self.pipe(), root=self.cache / "dsi")
        return self.tokens[key]

    def source(self, template: str, guidance: float, gen_seed: int = 0, shots="full",
               seed: int | None = None) -> Path:
        key = (template, guidance, gen_seed) + ((shots, seed) if shots != "full" else ())
        if key not in self.sources:
            if self.given is not None:
                self.sources[key] = Path(self.given)
            else:
                token = self.style_token(gen_seed, shots, seed) if template == "dsi" else None
                word = self.word if token is not None and token == self.token else None
                n, cache = self.need[key], self.cache / "synthetic"
                self.sources[key] = find_synthetic_set(self.cfg, n, template, guidance, token,
                                                       cache, seed=gen_seed, token=word) \
                    or cached_synthetic_set(self.cfg, n, template, token, guidance,
                                            seed=gen_seed, pipe=self.pipe(), root=cache,
                                            token=word)
        return self.sources[key]

    def folder(self, cell: Cell) -> Path:
        shots, seed = (cell.shots, cell.seed) if cell.own_token else ("full", None)
        source = self.source(cell.template, cell.guidance, cell.gen_seed, shots, seed)
        have = complete_per_class(source)
        if cell.per_class > have:
            raise ValueError(f"per_class={cell.per_class} is more than the {have} images per "
                             f"class of {str(source)!r}")
        if cell.per_class == have:
            return source
        out = self.subsets / f"{source.name}-first{cell.per_class}"
        return synthetic_subset(source, cell.per_class, out)


def find_synthetic_set(cfg: Config, per_class: int, template: str, guidance: float,
                       style_token=None, root: str | Path | None = None,
                       seed: int | None = None, token: str | None = None) -> Path | None:
    """The smallest complete set under `root` (default cache/synthetic/) drawn with exactly
    these options (model fingerprint, seed, template, token, guidance, steps, ...) and at least
    `per_class` images per class; None if there is none (manifest.find_set)."""
    seed = cfg.seed if seed is None else seed
    want = generation_options(cfg, None, template, style_token, guidance, None, seed, None,
                              token)[0]
    return find_set(Path(root) if root else cache_root() / "synthetic", want, per_class)


def _command() -> str:
    """The `bridge sweep` command line that started this sweep, if it was one."""
    if sys.argv and Path(sys.argv[0]).name in ("bridge", "cli.py"):
        return "bridge " + shlex.join(sys.argv[1:])
    return "run_sweep (Python)"
