"""The `bridge` command: one subcommand per stage of the method (see DESIGN.md for the contract)."""
from __future__ import annotations

import argparse
import errno
import json
import sys

from bridgelib.config import PROFILES, ConfigError, get_config
from bridgelib.prompts import TEMPLATES

# Errors a bad input raises: reported in one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, ConfigError, RuntimeError)
# OSErrors that mean "this output folder cannot take the files" (read-only, no space, quota).
_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except USER_ERRORS as e:
        message = str(e)
    except OSError as e:  # the system refused: a read-only or full folder, a device error
        message = f"{e.strerror or e}" + (f": {e.filename!r}" if e.filename else "")
        if e.errno in _WRITE_ERRNOS:
            message += ("; make it writable or free space, or choose another --out "
                        "(files already written are kept)")
    print(f"bridge {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (the usage is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bridge", description="Bridged transfer and Dataset Style "
                "Inversion (arXiv 2403.19866): generate, invert, train, report.")
    sub = p.add_subparsers(dest="command", required=True)

    g = _common(sub.add_parser("generate", help="generate a synthetic image set"))
    g.add_argument("--per-class", type=int, required=True, help="images per class")
    g.add_argument("--out", required=True, help="output folder (an ImageFolder + metadata.jsonl)")
    g.add_argument("--template", choices=TEMPLATES, help="prompt template")
    g.add_argument("--style-token", help="learned_embeds.safetensors from `bridge invert`")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    g.add_argument("--steps", type=int, help="sampler steps")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    g.set_defaults(func=_generate)

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

    t = _common(sub.add_parser("train", help="fine-tune the backbone with a transfer recipe"))
    from bridgelib.transfer import RECIPES
    t.add_argument("--recipe", required=True, help=f"one of: {', '.join(RECIPES)}")
    t.add_argument("--synthetic", help="synthetic set folder (all recipes but vanilla)")
    t.add_argument("--shots", default="full", help="real images per class: 1, 2, 4, 8, 16 or full")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--scratch", action="store_true", help="random initialisation, no pretraining")
    t.add_argument("--match-compute", action="store_true",
                   help="vanilla only: train as many steps as bridged would on --synthetic")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=_train)

    s = _common(sub.add_parser("sweep", help="run a grid of training runs (skips finished ones)",
                               description="Train every cell of recipes x shots x seeds x volume "
                               "x guidance x template not already in --out; synthetic sets are "
                               "generated once per (template, guidance) and cached; "
                               "--out/results.csv (one row per run) is rewritten after each run."))
    s.add_argument("--recipes", nargs="+", default=["vanilla"])
    s.add_argument("--shots", nargs="+", default=["4"])
    s.add_argument("--seeds", nargs="+", type=int, default=[0])
    s.add_argument("--volumes", nargs="+", type=int, default=[],
                   help="synthetic images per class (each smaller one: the first N of the largest)")
    s.add_argument("--guidance", nargs="+", type=float, default=[None],
                   help="guidance scales of the generated sets (default: the profile's)")
    s.add_argument("--templates", nargs="+", default=["single"], help="single, multi and/or dsi")
    s.add_argument("--style-token", help="DSI token file (default: the cached one, learned once)")
    s.add_argument("--synthetic", help="use this synthetic set instead of generating (its "
                   "template and guidance; --volumes default to its size)")
    s.add_argument("--with-scratch", action="store_true", help="also train from random init")
    s.add_argument("--out", required=True, help="folder of runs; results.csv is written in it")
    s.set_defaults(func=_sweep)

    r = sub.add_parser("report", help="aggregate runs (mean ± std) and draw the paper's figures")
    r.add_argument("--runs", nargs="+", required=True,
                   help="folders holding run directories, or results stores (results.csv)")
    r.add_argument("--out", required=True, help="folder for figures (PNG, SVG), CSVs, report.md")
    r.set_defaults(func=_report)

    m = sub.add_parser("mini", help="the offline mini world")
    msub = m.add_subparsers(dest="mini_command", required=True)
    b = msub.add_parser("build", help="rebuild the mini backbone, judge and generator (~40 min CPU; resumable)")
    b.add_argument("--out", help="folder to write into (default: the package's data/)")
    b.add_argument("--only", choices=("backbone", "judge", "generator"), action="append",
                   help="build only this part (repeatable)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_mini_build)
    c = msub.add_parser("calibrate", help="measure the mini world's conditions into "
                        "data/mini-world.json (~15 min CPU; resumable)")
    c.add_argument("--out", help="JSON file to write (default: data/mini-world.json)")
    c.set_defaults(func=_mini_calibrate)
    return p


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--profile", help=f"one of: {', '.join(PROFILES)} (default: $BRIDGELIB_PROFILE or mini)")
    p.add_argument("--dataset", help="dataset name, or the path of your own ImageFolder "
                   "(PATH/<class>/<image>, or PATH/train/<class>/ and PATH/test/<class>/) "
                   "(default: the profile's)")
    return p


def _config(args):
    cfg = get_config(args.profile)
    if args.dataset and args.dataset != cfg.dataset:
        cfg = get_config(args.profile, **dataset_overrides(args.dataset))
    return cfg


def dataset_overrides(value: str) -> dict:
    """Config fields for --dataset: a dataset name, or a folder of your own images, which is
    read as the registry's 'imagefolder' dataset rooted there (train/ and test/, or one folder
    of classes split per class with a seeded test fraction)."""
    from pathlib import Path

    from bridgelib.data import MINI_DATASET, SPLIT_LAYOUT
    from bridgelib.datasets import DATASETS
    if value == MINI_DATASET or value in DATASETS:
        return {"dataset": value}
    path = Path(value).expanduser()
    if path.is_dir():
        return {"dataset": "imagefolder", "data_root": str(path.resolve())}
    raise ValueError(f"--dataset {value!r} is neither a dataset name ({MINI_DATASET}, "
                     f"{', '.join(DATASETS)}) nor a folder; for your own images pass "
                     f"{SPLIT_LAYOUT.replace('<root>', 'PATH')}")


def _generate(args) -> None:
    from bridgelib.data import MINI_DATASET, real_data
    from bridgelib.generate import generate_synthetic_set
    cfg = _config(args)
    # the dataset's class names in label order (the mini target's are built in); decoded small,
    # as only the names are needed
    names = None if cfg.dataset == MINI_DATASET else real_data(cfg, "test", size=8).class_names
    out = generate_synthetic_set(cfg, args.out, args.per_class, class_names=names,
                                 template=args.template, style_token=args.style_token,
                                 guidance=args.guidance,
                                 steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                                 overwrite=args.overwrite)
    if _first_process():
        print(f"wrote {out}")


def _first_process() -> bool:
    """Launched on several processes (`accelerate launch`), each runs the command; one reports."""
    import os
    return os.environ.get("RANK", "0") == "0"


def _invert(args) -> None:
    from bridgelib.data import real_data
    from bridgelib.invert import learn_style_token
    cfg = _config(args)
    images = real_data(cfg, "train", args.shots, args.seed, size=cfg.generation.resolution)
    record = learn_style_token(cfg, images, args.out,
                               steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                               seed=args.seed, resume=args.resume, overwrite=args.overwrite)
    print(f"wrote {args.out} ({record['steps']} steps, final loss {record['loss_curve'][-1]:.4f})")


def _train(args) -> None:
    from bridgelib.transfer import train_run
    cfg = _config(args)
    cfg.train.match_compute = args.match_compute
    metrics = train_run(cfg, args.recipe, args.out, shots=args.shots, seed=args.seed,
                        synthetic_dir=args.synthetic, pretrained=not args.scratch,
                        overwrite=args.overwrite)
    if _first_process():
        print(json.dumps({k: metrics[k] for k in ("recipe", "shots", "seed", "test_acc")}))


def _sweep(args) -> None:
    from bridgelib.experiments import run_sweep, summarize
    if args.synthetic and (args.guidance != [None] or args.templates != ["single"]):
        raise ValueError("--synthetic DIR fixes the template and guidance (its own); drop "
                         "--guidance/--templates or drop --synthetic to generate")
    store = run_sweep(_config(args), args.out, recipes=args.recipes, shots=args.shots,
                      seeds=args.seeds, volumes=args.volumes, guidances=args.guidance,
                      templates=args.templates, scratch=(False, True) if args.with_scratch
                      else (False,), synthetic_dir=args.synthetic, style_token=args.style_token)
    by = ("recipe", "template", "guidance", "volume", "shots", "scratch")
    print(summarize(_filled(store), by=by).to_string(index=False))


def _report(args) -> None:
    from bridgelib.experiments import load_runs, summarize
    from bridgelib.files import atomic_write_bytes
    from bridgelib.report import write_report
    store, histories = load_runs(*args.runs)
    written = write_report(store, args.out, histories=histories)
    table = summarize(_filled(store), by=("dataset", "template", "guidance", "volume", "recipe",
                                          "scratch", "shots"))
    atomic_write_bytes(f"{args.out}/summary.csv", table.to_csv(index=False).encode())
    print(table.to_string(index=False))
    print(f"wrote {len(written) + 1} files to {args.out}")


def _filled(store):
    """Vanilla's empty template, guidance and volume as "none" and 0, so summaries keep it."""
    return store.fillna({"template": "none", "guidance": 0, "volume": 0})


def _mini_build(args) -> None:
    from bridgelib.mini.build import build_mini_world
    build_mini_world(args.out, only=args.only, seed=args.seed)


def _mini_calibrate(args) -> None:
    from bridgelib.mini.calibrate import WORLD_FILE, calibrate
    world = calibrate(args.out or WORLD_FILE)
    for key, ok in world["within_bands"].items():
        print(f"{key}: {world[key]['mean']:.3f} (band {world['bands'][key]}) {'ok' if ok else 'OUT OF BAND'}")
    print(f"wrote {args.out or WORLD_FILE}")


if __name__ == "__main__":
    sys.exit(main())
