"""The `bridge` command: one subcommand per stage of the method (the contract: docs/design.md).

Every subcommand that resolves a config takes --profile, --dataset and `--set KEY=VALUE` (any
config field by its dotted name, repeatable), and resolves them once through `get_config`.
Exit status: 0 done; 2 the command as typed cannot run (a bad argument or config value, an --out
that holds another run), refused before any work; 1 the run failed on what it met (a missing or
damaged file, a read-only folder, a full disk). An error is one line on stderr; --debug raises
it instead, with its full traceback.

No notebook teaches it: README's "The `bridge` command"; notebook 07 ends with the commands that
do what it did.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import warnings

from bridgelib.config import PROFILES, ConfigError, check_value, get_config, parse_value
from bridgelib.prompts import TEMPLATES
# Each subcommand imports its stage module inside its function below, when it runs: `bridge
# --help` and a usage error answer at once instead of loading torch, timm and diffusers first.

USAGE, FAILURE = 2, 1
# OSErrors that mean "this output folder cannot take the files" (read-only, no space, quota).
_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # a usage error exits here with status 2
    python_format, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        with _output_lock(args):
            return args.func(args) or 0
    except Exception as e:  # noqa: BLE001 -- every failure is one line; --debug shows the rest
        if args.debug:
            raise
        command = " ".join(filter(None, (args.command, getattr(args, "mini_command", None))))
        print(f"bridge {command}: error: {_one_line(e)}", file=sys.stderr)
        return _exit_status(e)
    finally:  # main() runs in-process too (tests, notebooks): leave Python's format as it was
        warnings.formatwarning = python_format


def _output_lock(args):
    """The command's --out, checked (not empty; a folder, or for invert a file) and locked
    for the run (locks.output_lock): a second writer into it is refused, naming the first's
    PID. $BRIDGELIB_THREADS is checked here too, before anything loads."""
    import contextlib

    from bridgelib.files import check_out, check_target, env_threads
    from bridgelib.locks import output_lock
    if args.command not in _LOCKED:
        return contextlib.nullcontext()
    env_threads()
    is_file = args.command == "invert"
    out = check_out(args.out, folder=not is_file)
    if is_file:  # /dev/null as --out: refused before a lock file is made beside it
        check_target(out)
        check_target(out.with_suffix(".json"))
    if args.command == "generate":  # it locks its folder itself, after checking it (generate.py)
        return contextlib.nullcontext()
    return output_lock(args.out, is_file=is_file)


_LOCKED = ("generate", "invert", "train", "sweep")


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning on one line, like the errors (Python's default adds the source line)."""
    return f"bridge: warning: {_printable(' '.join(str(message).split()))}\n"


def _exit_status(e: Exception) -> int:
    # A missing file is met by the run, even one named on the command line (FolderError, a
    # missing --synthetic folder, is a ValueError too); a bad value (ConfigError included) and an
    # --out holding another run are the command's own fault, found before any work.
    if isinstance(e, FileNotFoundError):
        return FAILURE
    return USAGE if isinstance(e, (ValueError, FileExistsError)) else FAILURE


_EXPECTED = (ValueError, OSError, RuntimeError)  # what the package raises on purpose
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """Control characters (a folder name's terminal escapes) shown as escapes, not obeyed."""
    return _CONTROL.sub(lambda m: repr(m[0])[1:-1], text)


def _one_line(e: Exception) -> str:
    """The message on one line, in the command's spelling: the library says `overwrite=True
    (--overwrite)` for notebook and command-line users alike; here it is `--overwrite`.
    An exception the package does not raise on purpose (a TypeError from an input nothing
    checks) says so, and points to --debug."""
    if not isinstance(e, _EXPECTED):
        detail = " ".join(str(e).split())[:300] or "no message"
        return _printable(f"unexpected {type(e).__name__} ({detail}): an input bridgelib does "
                          f"not check, or a bug; rerun with --debug for the traceback and "
                          f"report it")
    message = str(e)
    if isinstance(e, OSError) and e.strerror:  # the system refused: read-only, full, a device error
        message = e.strerror + (f": {e.filename!r}" if e.filename else "")
        if _in_cache(e.filename):  # not --out's fault: say which folder it is
            message += (" (in the cache, cache/ of the repository or $BRIDGELIB_CACHE); make it "
                        "a writable folder with free space, or point BRIDGELIB_CACHE at one")
        elif e.errno in _WRITE_ERRNOS:
            message += ("; make it writable or free space, or choose another --out "
                        "(files already written are kept)")
    message = re.sub(r"\b\w+=(\S+) \((--[\w-]+)\)",
                     lambda m: m[2] if m[1] == "True" else f"{m[2]} {m[1]}", message)
    return _printable(" ".join(message.split()))


def _in_cache(filename) -> bool:
    from pathlib import Path

    from bridgelib.config import cache_root
    if not isinstance(filename, (str, bytes)) or not filename:
        return False
    try:
        return Path(os.fsdecode(filename)).expanduser().absolute().is_relative_to(
            cache_root().absolute())
    except (OSError, ValueError):
        return False


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (the usage is one `--help` away)."""

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: error: {_printable(message)} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    import bridgelib
    p = _Parser(prog="bridge", description="Bridged transfer and Dataset Style "
                "Inversion (arXiv 2403.19866): generate, invert, train, report.")
    p.add_argument("--version", action="version", version=f"bridge {bridgelib.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_generate, _add_invert, _add_train, _add_sweep, _add_report, _add_mini):
        add(sub)
    return p


def _add_generate(sub) -> None:
    g = _common(sub.add_parser("generate", help="generate a synthetic image set"))
    g.add_argument("--per-class", type=int, required=True, help="images per class")
    g.add_argument("--out", required=True, help="output folder (an ImageFolder + metadata.jsonl)")
    g.add_argument("--template", choices=TEMPLATES, help="prompt template")
    g.add_argument("--style-token", help="learned_embeds.safetensors from `bridge invert`, or any "
                   "token file diffusers loads (diffusers, AUTOMATIC1111 .pt, kohya emb_params)")
    g.add_argument("--token", help="the word prompts use for the style token, instead of the "
                   "file's own (needed for an emb_params file, which names none)")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    g.add_argument("--steps", type=int, help="sampler steps")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    g.set_defaults(func=_generate)


def _add_invert(sub) -> None:
    v = _common(sub.add_parser("invert", help="learn a dataset style token (DSI)"))
    v.add_argument("--out", required=True, help="learned_embeds.safetensors to write")
    v.add_argument("--steps", type=int, help="optimizer steps (default: the profile's)")
    v.add_argument("--lr", type=float, help="learning rate (default: the profile's)")
    v.add_argument("--batch-size", type=int)
    v.add_argument("--shots", default="full", help="real images per class it learns from")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    v.add_argument("--overwrite", action="store_true")
    v.set_defaults(func=_invert)


def _add_train(sub) -> None:
    from bridgelib.transfer import RECIPES
    t = _common(sub.add_parser("train", help="fine-tune the backbone with a transfer recipe"))
    t.add_argument("--recipe", required=True, help=f"one of: {', '.join(RECIPES)}")
    t.add_argument("--synthetic", help="synthetic set folder (all recipes but vanilla)")
    t.add_argument("--shots", default="full", help="real images per class: 1, 2, 4, 8, 16 or full")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--scratch", action="store_true", help="random initialisation, no pretraining")
    t.add_argument("--match-compute", action="store_true",  # sets train.match_compute
                   help="vanilla only: train as many steps as bridged would on --synthetic")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--no-save-model", action="store_true",
                   help="keep no classifier folder (only config, history, metrics)")
    t.set_defaults(func=_train)


def _add_sweep(sub) -> None:
    s = _common(sub.add_parser("sweep", help="run a grid of training runs (skips finished ones)",
                               description="Train every cell of recipes x shots x seeds x "
                               "synthetic images per class x guidance x template not already "
                               "in --out; synthetic sets are generated once per (template, "
                               "guidance) and cached; "
                               "--out/results.csv (one row per run) is rewritten after each run."))
    s.add_argument("--recipes", nargs="+", default=["vanilla"])
    s.add_argument("--shots", nargs="+", default=["4"])
    s.add_argument("--seeds", nargs="+", type=int, default=[0])
    s.add_argument("--per-class", nargs="+", type=int, default=[],
                   help="synthetic images per class (each smaller one: the first N of the largest)")
    s.add_argument("--guidance", nargs="+", type=float, default=[None],
                   help="guidance scales of the generated sets (default: the profile's)")
    s.add_argument("--templates", nargs="+", default=["single"], help="single, multi and/or dsi")
    s.add_argument("--style-token", help="DSI token file (default: the cached one, learned once)")
    s.add_argument("--token", help="the word prompts use for --style-token, instead of the "
                   "file's own (needed for kohya/A1111 emb_params files, which name none)")
    s.add_argument("--synthetic", help="use this synthetic set instead of generating (its "
                   "template and guidance; --per-class defaults to its size)")
    s.add_argument("--gen-seeds", nargs="+", type=int, default=[0],
                   help="seeds of the synthetic sets (and DSI tokens): generation noise")
    s.add_argument("--alternate-gen-seeds", action="store_true", help="training seed s trains "
                   "on generation seed number s %% len(--gen-seeds) only (independent pairs)")
    s.add_argument("--fixed-steps", type=int, default=0,
                   help="every synthetic stage trains exactly N steps (default: its epochs)")
    s.add_argument("--match-compute", action="store_true",
                   help="also train vanilla for as many steps as bridged at each --per-class")
    s.add_argument("--mixed-epochs", action="store_true", help="mixed trains the real stage's "
                   "epochs over the union (each real image as many passes as in vanilla)")
    s.add_argument("--workers", type=int, default=1, help="train runs in N processes at once "
                   "(sets and tokens are made first); 2 measured faster on 2 cores, see README")
    s.add_argument("--with-scratch", action="store_true", help="also train from random init")
    s.add_argument("--no-save-model", action="store_true",
                   help="keep no run's fine-tuned classifier (saves disk)")
    s.add_argument("--out", required=True, help="folder of runs; results.csv is written in it")
    s.set_defaults(func=_sweep)


def _add_report(sub) -> None:
    r = _common(sub.add_parser("report", help="aggregate runs (mean ± std) and draw the paper's "
                               "figures"), config=False)
    r.add_argument("--runs", nargs="+", required=True,
                   help="folders holding run directories, or results stores (results.csv)")
    r.add_argument("--out", required=True, help="folder for figures (PNG, SVG), CSVs, report.md")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an earlier report's files in --out (only those)")
    r.set_defaults(func=_report)


def _add_mini(sub) -> None:
    m = sub.add_parser("mini", help="the offline mini world")
    msub = m.add_subparsers(dest="mini_command", required=True)
    b = _common(msub.add_parser("build", help="rebuild the mini backbone, judge and generator "
                                "(~40 min CPU; resumable)"), config=False)
    b.add_argument("--out", help="folder to write into (default: the package's data/)")
    b.add_argument("--only", choices=("backbone", "judge", "generator"), action="append",
                   help="build only this part (repeatable)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_mini_build)
    c = _common(msub.add_parser("calibrate", help="measure the mini world's conditions into "
                                "data/mini-world.json (~15 min CPU; resumable)"), config=False)
    c.add_argument("--out", help="JSON file to write (default: data/mini-world.json)")
    c.set_defaults(func=_mini_calibrate)


def _common(p: argparse.ArgumentParser, config: bool = True) -> argparse.ArgumentParser:
    """Options of every subcommand; `config`: the command resolves a config from them."""
    if config:
        p.add_argument("--profile", help=f"one of: {', '.join(PROFILES)} "
                       "(default: $BRIDGELIB_PROFILE or mini)")
        p.add_argument("--dataset", help="dataset name, or the path of your own ImageFolder "
                       "(PATH/<class>/<image>, or PATH/train/<class>/ and PATH/test/<class>/) "
                       "(default: the profile's)")
        p.add_argument("--download", action="store_true", help="fetch a missing registry "
                       "dataset into data_root (torchvision; sets download=true)")
    p.add_argument("--set", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                   help="set a config field by its dotted name, e.g. train.real.epochs=1 "
                   "(repeatable; fields: `bridgelib.config.field_names()`)" if config else
                   "refused: this command resolves no config")
    p.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    return p


def _key_value(item: str) -> tuple[str, object]:
    """--set KEY=VALUE: the field's dotted name and the value parsed to the field's type."""
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE, e.g. train.real.epochs=1")
    if key == "profile":  # it picks the defaults every other field overrides
        raise argparse.ArgumentTypeError("choose the profile with --profile NAME, not --set")
    try:
        return key, parse_value(key, text)
    except ConfigError as e:  # an unknown field: argparse's one-line usage error, status 2
        raise argparse.ArgumentTypeError(str(e)) from None


def _config(args):
    """The command's one config: its profile, then --dataset, then each --set (a later one wins),
    then the command's config flags; resolved and validated once, and not edited afterwards."""
    overrides = dataset_overrides(args.dataset) if args.dataset else {}
    overrides.update(args.set)
    if getattr(args, "match_compute", False):
        overrides["train.match_compute"] = True
    if getattr(args, "download", False):
        overrides["download"] = True
    return get_config(args.profile, **overrides)


def _refuse_set(args, why: str) -> None:
    """A command that resolves no config would ignore --set: refuse it rather than mislead."""
    if args.set:
        raise ConfigError(f"--set {args.set[0][0]}=... has no effect here: {why}")


def dataset_overrides(value: str) -> dict:
    """Config fields for --dataset: a dataset name, or a folder of your own images, which is
    read as the registry's 'imagefolder' dataset rooted there (train/ and test/, or one folder
    of classes split per class with a seeded test fraction)."""
    from pathlib import Path

    from bridgelib.datasets import DATASETS
    from bridgelib.folders import SPLIT_LAYOUT
    if value in DATASETS:
        return {"dataset": value}
    path = Path(value).expanduser()
    if path.is_dir():
        return {"dataset": "imagefolder", "data_root": str(path.resolve())}
    raise ValueError(f"--dataset {value!r} is neither a dataset name ({', '.join(DATASETS)}) "
                     f"nor a folder; for your own images pass "
                     f"{SPLIT_LAYOUT.replace('<root>', 'PATH')}")


def _generate(args) -> None:
    from bridgelib.generate import generate_synthetic_set
    cfg = _config(args)
    # class_names left out: the dataset's own, read without decoding (datasets.dataset_class_names)
    out = generate_synthetic_set(cfg, args.out, args.per_class, template=args.template,
                                 style_token=args.style_token, token=args.token,
                                 guidance=args.guidance, steps=args.steps, seed=args.seed,
                                 batch_size=args.batch_size, overwrite=args.overwrite)
    if _first_process():
        print(f"wrote {out}")


def _first_process() -> bool:
    """Launched on several processes (`accelerate launch`), each runs the command; one reports."""
    import os
    return os.environ.get("RANK", "0") == "0"


def _invert(args) -> None:
    from bridgelib.datasets import load_dataset
    from bridgelib.invert import learn_style_token
    cfg = _config(args)
    images = load_dataset(cfg, "train", args.shots, args.seed, size=cfg.generation.resolution)
    record = learn_style_token(cfg, images, args.out,
                               steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                               seed=args.seed, resume=args.resume, overwrite=args.overwrite)
    print(f"wrote {args.out} ({record['steps']} steps, final loss {record['loss_curve'][-1]:.4f}); "
          f"its checkpoints are kept in {record['checkpoints']} (--resume with more --steps "
          f"extends the run; delete the folder if you will not)")


def _train(args) -> None:
    from bridgelib.transfer import train_run
    from bridgelib.files import check_target
    from bridgelib.memory import check_training_memory
    from bridgelib.models import (CLASSIFIER_DIR, CLASSIFIER_FILES, LEGACY_CLASSIFIER_CONFIG,
                                  LEGACY_CLASSIFIER_FILE)
    cfg = _config(args)
    check_value("seed", args.seed, "seed")  # train_run seeds numpy with it (0..2**32-1)
    for name in ("config.json", "history.csv", "metrics.json", LEGACY_CLASSIFIER_FILE,
                 LEGACY_CLASSIFIER_CONFIG, *(f"{CLASSIFIER_DIR}/{f}" for f in CLASSIFIER_FILES)):
        # what the run replaces at its end: refused now, not then
        check_target(f"{args.out}/{name}")
    check_training_memory(cfg)
    metrics = train_run(cfg, args.recipe, args.out, shots=args.shots, seed=args.seed,
                        synthetic_dir=args.synthetic, pretrained=not args.scratch,
                        overwrite=args.overwrite, save_model=not args.no_save_model)
    if _first_process():
        print(json.dumps({k: metrics[k] for k in ("recipe", "shots", "seed", "test_acc")}))


def _sweep(args) -> None:
    from bridgelib.experiments import run_sweep
    from bridgelib.files import check_target
    from bridgelib.memory import check_training_memory
    from bridgelib.store import summarize
    if args.synthetic and (args.guidance != [None] or args.templates != ["single"]):
        raise ValueError("--synthetic DIR fixes the template and guidance (its own); drop "
                         "--guidance/--templates or drop --synthetic to generate")
    _check_grid(args)  # every value of the grid, before the first cell trains
    check_target(f"{args.out}/sweeps.jsonl")  # the provenance log it appends to: never a link
    cfg = _config(args)
    check_training_memory(cfg)
    store = run_sweep(cfg, args.out, recipes=args.recipes, shots=args.shots,
                      seeds=args.seeds, per_class=args.per_class, guidances=args.guidance,
                      templates=args.templates, scratch=(False, True) if args.with_scratch
                      else (False,), gen_seeds=args.gen_seeds, fixed_steps=args.fixed_steps,
                      match_compute=args.match_compute, synthetic_dir=args.synthetic,
                      style_token=args.style_token, save_model=not args.no_save_model,
                      token=args.token, mixed_epochs=args.mixed_epochs, workers=args.workers,
                      alternate_gen_seeds=args.alternate_gen_seeds)
    by = ("recipe", "match_compute", "template", "guidance", "gen_seed", "fixed_steps", "per_class",
          "shots", "scratch")
    print(summarize(_filled(store), by=by).to_string(index=False))


def _check_grid(args) -> None:
    """Each value of a sweep's grid by the rule of the option it stands for: a bad one is one
    line now, not after the cells before it trained (`--per-class 100001` was refused only then)."""
    from bridgelib.config import PER_CLASS
    from bridgelib.splits import parse_shots
    from bridgelib.transfer import RECIPES
    from bridgelib.validation import MAX_STEPS, integer
    for recipe in args.recipes:
        if recipe not in RECIPES:
            raise ValueError(f"--recipes {recipe!r} is invalid; valid: {', '.join(RECIPES)}")
    for template in args.templates:
        if template not in TEMPLATES:
            raise ValueError(f"--templates {template!r} is invalid; valid: {', '.join(TEMPLATES)}")
    for shots in args.shots:
        try:
            parse_shots(shots)
        except ValueError:
            raise ValueError(f"--shots {shots!r} is invalid; expected a positive integer or "
                             f"'full'") from None
    for per_class in args.per_class:
        check_value("--per-class", per_class, PER_CLASS)
    for seed in (*args.seeds, *args.gen_seeds):
        check_value("--seeds/--gen-seeds", seed, "seed")
    for guidance in args.guidance:
        if guidance is not None:
            check_value("--guidance", guidance, "generation.guidance")
    check_value("--fixed-steps", args.fixed_steps, integer(0, high=MAX_STEPS))


def _report(args) -> None:
    from bridgelib.store import load_runs, summarize
    from bridgelib.files import atomic_write_bytes
    from bridgelib.report import write_report
    from bridgelib.files import check_out, check_target
    _refuse_set(args, "report reads each run's own config.json")
    out = check_out(args.out)
    if out.is_dir():  # a link or a device named like a figure: refused before any work
        for p in out.iterdir():
            if p.suffix in (".png", ".svg", ".csv", ".md"):
                check_target(p)
    store, histories = load_runs(*args.runs)
    written = write_report(store, args.out, histories=histories, overwrite=args.overwrite)
    table = summarize(_filled(store), by=("dataset", "template", "guidance", "per_class", "recipe",
                                          "scratch", "shots"))
    atomic_write_bytes(f"{args.out}/summary.csv", table.to_csv(index=False).encode())
    print(table.to_string(index=False))
    print(f"wrote {len(written) + 1} files to {args.out}")


def _filled(store):
    """Vanilla's empty template, guidance, per_class and generation seed as "none" and 0, so
    summaries keep it."""
    return store.fillna({"template": "none", "guidance": 0, "per_class": 0, "gen_seed": 0})


def _mini_build(args) -> None:
    from bridgelib.mini_build.build import build_mini_world
    _refuse_set(args, "the mini world is built with its own fixed settings")
    build_mini_world(args.out, only=args.only, seed=args.seed)


def _mini_calibrate(args) -> None:
    from bridgelib.mini_build.calibrate import WORLD_FILE, calibrate
    _refuse_set(args, "calibration measures the mini profile's defaults")
    world = calibrate(args.out or WORLD_FILE)
    for key, ok in world["within_bands"].items():
        measured = f"{world[key]['mean']:.3f} (band {world['bands'][key]}) " if key in world["bands"] else ""
        print(f"{key}: {measured}{'holds' if ok else 'DOES NOT HOLD'}")
    print(f"wrote {args.out or WORLD_FILE}")


if __name__ == "__main__":
    sys.exit(main())
