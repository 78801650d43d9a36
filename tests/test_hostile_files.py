"""Hostile files and folders (issue 29), through the `bridge` command, in-process where it can.

Every case puts a sentinel tree `outside/` beside the command's --out and links from --out (or
from what the command reads) into it, or hands the command a file that is not what it claims:
a link, a device, a FIFO, a file far too large, a JSON list where an object belongs, two class
folders that are one, a split whose test set is its training set, a run that would not fit in
memory, a model that would train to NaN. Each must exit with its status and exactly one line
on stderr (`bridge <command>: error: ...`, no traceback) naming the file or value, and nothing
may change anywhere under the test's folder: every file, link and FIFO is compared before and
after (sha256 of each regular file, the target of each link), link targets included.
docs/bad_inputs.md lists these cases by kind ("Files that are not what they claim"): keep them
in step.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bridgelib.cli as cli
from cli_helpers import generate, invert, train
from test_hostile_inputs import dataset, fake_set, token_file

# ---- the sentinel tree and the snapshot ---------------------------------------------------------


def outside(t: Path) -> Path:
    """Files of the user's outside every --out: what a link in --out points at."""
    root = t / "outside"
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for name, data in {"photo.png": b"\x89PNG my holiday", "notes.txt": b"mine",
                       "log.jsonl": b'{"mine": 1}\n', "record.json": b'{"mine": 2}',
                       "sub/deep.txt": b"deeper"}.items():
        (root / name).write_bytes(data)
    return root


def tree(root: Path) -> dict[str, str]:
    """Every entry under `root`, links not followed: sha256 of a file, a link's target, the
    kind of anything else (a FIFO is never opened)."""
    found = {}
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(top) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if os.path.islink(p):
                found[rel] = "link:" + os.readlink(p)
            elif p.is_file() and st.st_size > 32 << 20:  # the sparse ones: never read
                found[rel] = f"size:{st.st_size}:{st.st_mtime_ns}"
            elif p.is_file():
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                found[rel] = f"mode:{st.st_mode:o}"
    return found


def link(path: Path, target) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def sparse(path: Path, size: int) -> Path:
    """A file that claims `size` bytes and takes none on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else str(data).encode())
    return path


@pytest.fixture(autouse=True)
def no_hang():
    """A reader that blocks on a FIFO would hang the suite: fail the case instead."""
    def stop(*_):
        raise TimeoutError("the case hung")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def sixteen_gib(monkeypatch):
    """The memory caps against a machine of 16 GiB whatever runs the suite (the estimates
    themselves are the package's own)."""
    import bridgelib.memory
    monkeypatch.setattr(bridgelib.memory, "memory_limit",
                        lambda device: (16 << 30, "memory of this machine"))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Split files of your own folders go to the cache: this test's, not the repository's."""
    monkeypatch.setenv("BRIDGELIB_CACHE", str(tmp_path / "cache"))


# ---- what the cases hand the command -----------------------------------------------------------


def report(t, out="rep", *extra):
    (t / "runs").mkdir(exist_ok=True)
    return ["report", "--runs", str(t / "runs"), "--out", str(t / out), *extra]


def sweep(t, *extra):
    return ["sweep", "--out", str(t / "sw"), *extra]


def a_set(t, change=None) -> list[str]:
    """`train --recipe bridged` on a fake set in t/syn, after `change(root)`."""
    root = fake_set(t / "syn")
    if change is not None:
        change(root)
    return train(t, "--recipe", "bridged", "--synthetic", str(root))


def replace(path: Path, make):
    """Remove `path`, then `make(path)` (a link, a FIFO, ...)."""
    path.unlink()
    make(path)


BAG, COAT = "008.bag", "004.coat"  # a set's class folders: the label, then the class's slug


def linked_class_folders(root: Path):
    for f in (root / BAG).iterdir():
        f.unlink()
    (root / BAG).rmdir()
    (root / BAG).symlink_to(root / COAT, target_is_directory=True)


def own_dataset(t, classes=("cat", "dog")) -> Path:
    return dataset(t / "data", list(classes))


def split_cache_file(t, data: Path, name: str) -> Path:
    from bridgelib.splits import user_split_dir
    return user_split_dir(data) / name


def with_split(t, content) -> list[str]:
    """Your own single folder whose drawn train/test split file holds `content`."""
    data = own_dataset(t)
    path = split_cache_file(t, data, "imagefolder_test0.2_seed0.json")
    if content == "fifo":
        fifo(path)
    else:
        write(path, json.dumps(content))
    return train(t, "--dataset", str(data))


ALL = [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]


def with_kshot(t, indices) -> list[str]:
    """Your own train/ + test/ folders whose 1-shot file holds `indices` (its fingerprint
    right, so that only the indices are wrong)."""
    import hashlib as h
    dataset(t / "data" / "train", ["cat", "dog"])
    dataset(t / "data" / "test", ["cat", "dog"])
    labels = np.array([0, 0, 0, 1, 1, 1], dtype="<i8")
    path = split_cache_file(t, t / "data", "imagefolder_1shot_seed0.json")
    write(path, json.dumps({"shots": 1, "seed": 0, "indices": indices, "fingerprint": {
        "images": 6, "labels_sha256": h.sha256(labels.tobytes()).hexdigest()}}))
    return train(t, "--dataset", str(t / "data"))


def checkpoint(t, obj) -> list[str]:
    import torch
    path = t / "tok_checkpoints" / "step_000001.pt"
    path.parent.mkdir(parents=True)
    if obj == "fifo":
        fifo(path)
    else:
        torch.save(obj, path)
    return invert(t, "--resume")


def weights_folder(t, manifest: str) -> list[str]:
    write(t / "w" / "model.safetensors", b"not weights")
    write(t / "w" / "manifest.json", manifest)
    return train(t, "--set", f"backbone_weights={t / 'w'}")


def a_run(t, metrics) -> list[str]:
    if metrics == "fifo":
        fifo(t / "runs" / "r1" / "metrics.json")
    else:
        write(t / "runs" / "r1" / "metrics.json", json.dumps(metrics))
    return report(t)


def many_vectors(t, n: int) -> Path:
    import torch
    from safetensors.torch import save_file
    save_file({"<s*>": torch.full((n, 64), 0.01)}, t / "s.safetensors")
    return t / "s.safetensors"


# (id, setup(t) -> argv, exit status, strings the one line must hold[, env])
CASES = [
    # --- the one writer: never through a link, never over a device or FIFO ---------------------
    ("report-figure-is-a-link", lambda t: (
        link(t / "rep" / "accuracy_vs_shots.png", t / "outside" / "photo.png"),
        report(t, "rep", "--overwrite"))[1], 2,
     ["accuracy_vs_shots.png'", "symlink", "never through a link"]),
    ("report-svg-is-a-link", lambda t: (
        link(t / "rep" / "claims_forest.svg", t / "outside" / "notes.txt"), report(t))[1], 2,
     ["claims_forest.svg'", "symlink"]),
    ("report-md-is-a-link", lambda t: (
        link(t / "rep" / "report.md", t / "outside" / "notes.txt"),
        report(t, "rep", "--overwrite"))[1], 2, ["report.md'", "symlink"]),
    ("report-csv-is-a-fifo", lambda t: (fifo(t / "rep" / "summary.csv"),
                                        report(t, "rep", "--overwrite"))[1], 2,
     ["summary.csv'", "a FIFO"]),
    ("report-csv-links-to-dev-null", lambda t: (link(t / "rep" / "claims.csv", "/dev/null"),
                                                report(t, "rep", "--overwrite"))[1], 2,
     ["claims.csv'", "symlink (to '/dev/null')"]),
    ("report-out-empty", lambda t: report(t)[:-1] + [""], 2, ["--out ''", "is empty"]),
    ("sweep-log-is-a-link", lambda t: (
        link(t / "sw" / "sweeps.jsonl", t / "outside" / "log.jsonl"), sweep(t))[1], 2,
     ["sweeps.jsonl'", "symlink"]),
    ("sweep-log-is-a-fifo", lambda t: (fifo(t / "sw" / "sweeps.jsonl"), sweep(t))[1], 2,
     ["sweeps.jsonl'", "a FIFO"]),
    ("sweep-out-is-a-file", lambda t: (write(t / "sw", "mine"), sweep(t))[1], 2,
     ["sw'", "is not a folder"]),
    ("invert-out-dev-null-overwrite", lambda t: ["invert", "--shots", "1", "--out", "/dev/null",
                                                 "--overwrite"], 2,
     ["'/dev/null'", "a character device"]),
    ("invert-out-is-a-link-overwrite", lambda t: (
        link(t / "tok.safetensors", t / "outside" / "photo.png"), invert(t, "--overwrite"))[1], 2,
     ["tok.safetensors'", "symlink", "with or without --overwrite"]),
    ("invert-out-is-a-fifo", lambda t: (fifo(t / "tok.safetensors"), invert(t))[1], 2,
     ["tok.safetensors'", "a FIFO"]),
    ("invert-record-of-yours-beside-out", lambda t: (
        write(t / "tok.json", '{"mine": 1}'), invert(t))[1], 2,
     ["tok.json'", "training record", "--overwrite"]),
    ("invert-record-is-a-link-overwrite", lambda t: (
        link(t / "tok.json", t / "outside" / "record.json"), invert(t, "--overwrite"))[1], 2,
     ["tok.json'", "symlink"]),
    ("invert-out-is-a-folder", lambda t: ((t / "tok.safetensors").mkdir(), invert(t))[1], 2,
     ["tok.safetensors'", "is a folder"]),
    ("invert-out-empty", lambda t: invert(t)[:-2] + ["--out", ""], 2, ["--out ''", "empty"]),
    ("train-out-empty", lambda t: train(t)[:-2] + ["--out", ""], 2, ["--out ''", "empty"]),
    ("train-out-is-a-file", lambda t: (write(t / "run", "mine"), train(t))[1], 2,
     ["run'", "is not a folder"]),
    ("train-out-links-to-a-file-outside", lambda t: (
        link(t / "run", t / "outside" / "notes.txt"), train(t))[1], 2,
     ["run'", "is not a folder"]),
    ("train-config-is-a-link-overwrite", lambda t: (
        link(t / "run" / "config.json", t / "outside" / "record.json"),
        train(t, "--overwrite"))[1], 2, ["run/config.json'", "symlink"]),
    ("train-metrics-is-a-link-overwrite", lambda t: (
        link(t / "run" / "metrics.json", t / "outside" / "record.json"),
        train(t, "--overwrite"))[1], 2, ["run/metrics.json'", "symlink"]),
    ("train-classifier-is-a-fifo-overwrite", lambda t: (
        fifo(t / "run" / "classifier.safetensors"), train(t, "--overwrite"))[1], 2,
     ["classifier.safetensors'", "a FIFO"]),
    ("train-history-links-to-dev-null", lambda t: (
        link(t / "run" / "history.csv", "/dev/null"), train(t, "--overwrite"))[1], 2,
     ["history.csv'", "symlink (to '/dev/null')"]),
    ("generate-out-empty", lambda t: generate(t)[:-2] + ["--out", " "], 2, ["--out ' '", "empty"]),
    ("generate-out-is-a-file", lambda t: (write(t / "set", "mine"), generate(t))[1], 2,
     ["set'", "is not a folder"]),
    ("generate-metadata-links-outside", lambda t: (
        fake_set(t / "set"), replace(t / "set" / "metadata.jsonl",
                                     lambda p: link(p, t / "outside" / "log.jsonl")),
        generate(t))[2], 2, ["symlink 'metadata.jsonl'"]),
    ("generate-run-json-is-a-fifo", lambda t: (
        fake_set(t / "set"), replace(t / "set" / "run.json", fifo), generate(t))[2], 2,
     ["run.json'", "a FIFO"]),
    # --- the one reader: regular files of a bounded size ---------------------------------------
    ("manifest-links-to-dev-zero", lambda t: a_set(t, lambda r: replace(
        r / "metadata.jsonl", lambda p: link(p, "/dev/zero"))), 2,
     ["syn/metadata.jsonl'", "a character device", "not a regular file"]),
    ("manifest-is-a-fifo", lambda t: a_set(t, lambda r: replace(r / "metadata.jsonl", fifo)), 2,
     ["metadata.jsonl'", "a FIFO"]),
    ("manifest-far-too-large", lambda t: a_set(t, lambda r: replace(
        r / "metadata.jsonl", lambda p: sparse(p, 3 << 30))), 2,
     ["metadata.jsonl'", "3.0 GiB", "more than the 2.0 GiB"]),
    ("run-json-is-a-fifo", lambda t: a_set(t, lambda r: replace(r / "run.json", fifo)), 2,
     ["syn/run.json'", "a FIFO"]),
    ("run-json-far-too-large", lambda t: a_set(t, lambda r: replace(
        r / "run.json", lambda p: sparse(p, 100 << 20))), 2,
     ["run.json'", "100.0 MiB", "64.0 MiB"]),
    ("set-class-folder-links-to-another", lambda t: a_set(t, linked_class_folders), 2,
     [f"syn/{BAG}'", f"syn/{COAT}'", "through a symlink", "two labels"]),
    ("set-image-links-into-another-class", lambda t: a_set(t, lambda r: replace(
        r / BAG / "00000.png", lambda p: link(p, r / COAT / "00000.png"))), 2,
     [f"{BAG}/00000.png'", "one image through a symlink"]),
    ("dataset-class-folders-are-one", lambda t: (
        own_dataset(t, ["cat"]), link(t / "data" / "dog", t / "data" / "cat"),
        train(t, "--dataset", str(t / "data")))[2], 2, ["data/cat'", "data/dog'", "two labels"]),
    ("split-test-is-train", lambda t: with_split(t, {"train": ALL, "test": ALL}), 2,
     ["imagefolder_test0.2_seed0.json'", "6 file(s) in both train and test", "cat/0.png"]),
    ("split-file-a-json-list", lambda t: with_split(t, ALL), 2,
     ["split file", "test0.2_seed0.json'", "holds a JSON list", "delete it"]),
    ("split-file-a-fifo", lambda t: with_split(t, "fifo"), 2, ["test0.2_seed0.json'", "a FIFO"]),
    ("split-lists-not-names", lambda t: with_split(t, {"train": [1], "test": ALL}), 2,
     ["test0.2_seed0.json'", "lists of file names"]),
    ("kshot-index-out-of-range", lambda t: with_kshot(t, [0, 99]), 2,
     ["imagefolder_1shot_seed0.json'", "index 99", "0..5"]),
    ("kshot-index-twice", lambda t: with_kshot(t, [3, 3]), 2, ["1shot_seed0.json'", "index 3 twice"]),
    ("kshot-indices-not-a-list", lambda t: with_kshot(t, "all"), 2,
     ["1shot_seed0.json'", "no list of integer indices"]),
    ("checkpoint-weights-only-refuses", lambda t: checkpoint(t, {"x": argparse_namespace()}), 2,
     ["step_000001.pt'", "cannot be read (UnpicklingError)", "--overwrite"]),
    ("checkpoint-a-list", lambda t: checkpoint(t, [1, 2]), 2,
     ["step_000001.pt'", "not a checkpoint of `bridge invert`"]),
    ("checkpoint-a-fifo", lambda t: checkpoint(t, "fifo"), 2, ["step_000001.pt'", "a FIFO"]),
    ("weights-manifest-a-json-list", lambda t: weights_folder(t, "[1]"), 2,
     ["w/manifest.json'", "weights manifest", "holds a JSON list"]),
    ("weights-manifest-not-json", lambda t: weights_folder(t, "{'sha"), 2,
     ["w/manifest.json'", "not valid JSON"]),
    ("report-metrics-a-json-list", lambda t: a_run(t, [1]), 2,
     ["r1/metrics.json'", "holds a JSON list"]),
    ("report-metrics-a-fifo", lambda t: a_run(t, "fifo"), 2, ["r1/metrics.json'", "a FIFO"]),
    # --- caps that hold: derived from what the run allocates and the machine has ----------------
    ("image-size-at-its-cap", lambda t: train(t, "--set", "image_size=4096"), 2,
     ["image_size=4096", "GiB of activations", "more than the 16.0 GiB memory of this machine"]),
    ("image-size-too-large-for-a-sweep", lambda t: sweep(t, "--set", "image_size=3072"), 2,
     ["image_size=3072", "GiB of activations"]),
    ("resolution-at-its-cap", lambda t: generate(t, "--set", "generation.resolution=4096"), 2,
     ["generation.resolution=4096", "10.0 GiB an image", "memory"]),
    ("resolution-times-batch", lambda t: generate(t, "--set", "generation.resolution=1024",
                                                  "--batch-size", "100"), 2,
     ["generation.resolution=1024 with batch_size=100", "62.5 GiB"]),
    ("threads-beyond-the-cpus", lambda t: train(t), 2,
     ["$BRIDGELIB_THREADS='100000'", "up to", "the CPUs this process may use"],
     {"BRIDGELIB_THREADS": "100000"}),
    ("threads-zero", lambda t: generate(t), 2, ["$BRIDGELIB_THREADS='0'"],
     {"BRIDGELIB_THREADS": "0"}),
    ("threads-negative", lambda t: invert(t), 2, ["$BRIDGELIB_THREADS='-3'"],
     {"BRIDGELIB_THREADS": "-3"}),
    ("sweep-per-class-beyond-the-cap", lambda t: sweep(t, "--per-class", "100001"), 2,
     ["--per-class=100001", "up to 100,000"]),
    ("sweep-shots-zero", lambda t: sweep(t, "--shots", "4", "0"), 2, ["--shots '0'", "'full'"]),
    ("sweep-recipe-unknown", lambda t: sweep(t, "--recipes", "vanilla", "bridged+"), 2,
     ["--recipes 'bridged+'", "bridged++"]),
    ("sweep-seed-negative", lambda t: sweep(t, "--gen-seeds", "-1"), 2,
     ["--seeds/--gen-seeds=-1", "integer >= 0"]),
    ("sweep-guidance-nan", lambda t: sweep(t, "--guidance", "nan"), 2, ["--guidance=nan"]),
    ("sweep-fixed-steps-negative", lambda t: sweep(t, "--fixed-steps", "-5"), 2,
     ["--fixed-steps=-5"]),
    # --- no garbage success ---------------------------------------------------------------------
    ("weight-decay-1e30", lambda t: train(t, "--set", "train.real.weight_decay=1e30"), 2,
     ["train.real.weight_decay=1e+30", "[0, 1)"]),
    ("lr-that-trains-to-chance", lambda t: train(t, "--set", "train.real.lr=9.9"), 2,
     ["train.real.lr=9.9", "below 1"]),
    ("synthetic-lr-beyond", lambda t: sweep(t, "--set", "train.synthetic.lr=1.5"), 2,
     ["train.synthetic.lr=1.5"]),
    ("mixup-alpha-huge", lambda t: train(t, "--set", "train.mixup_alpha=1e9"), 2,
     ["train.mixup_alpha=1000000000.0", "[0, 100)"]),
    ("style-token-of-huge-norm", lambda t: generate(
        t, "--style-token", str(token_file(t / "s.safetensors", value=1e6))), 2,
     ["s.safetensors'", "norm 8e+06", "far outside", "bridge invert"]),
    ("style-token-off-the-tokenizer", lambda t: generate(
        t, "--style-token", str(many_vectors(t, 16))), 2,  # the mini tokenizer takes 20
     ["'A t shirt photo in the style of <s*>'", "16 vector(s)", "beyond the tokenizer's 20"]),
    ("scheduler-that-is-no-sampler", lambda t: generate(
        t, "--set", "generation.scheduler=AmusedScheduler"), 2,
     ["generation.scheduler='AmusedScheduler'", "cannot drive this pipeline", "DDIMScheduler"]),
    ("backbone-kwargs-foreign-key", lambda t: train(t, "--set", 'backbone_kwargs={"colour": 3}'),
     2, ["backbone_kwargs={'colour': 3}", "resnet10t", "timm.create_model"]),
    # --- one line for every failure -------------------------------------------------------------
    ("out-name-with-terminal-escapes", lambda t: (
        write(t / "run\x1b[2J", "mine"), train(t)[:-2] + ["--out", str(t / "run\x1b[2J")])[1], 2,
     ["run\\x1b[2J'", "is not a folder"]),
    ("an-unchecked-input-says-unexpected", lambda t: (
        write(t / "sw" / "sweep.json", "[1, 2]"), sweep(t))[1], 1,
     ["unexpected AttributeError", "rerun with --debug"]),
    ("cache-that-is-a-file-is-named", lambda t: (
        write(t / "cachefile", "mine"), own_dataset(t),
        train(t, "--dataset", str(t / "data")))[2], 1,
     ["cachefile/splits", "in the cache", "BRIDGELIB_CACHE"], {"BRIDGELIB_CACHE": "cachefile"}),
]


def argparse_namespace():
    import argparse
    return argparse.Namespace(a=1)  # a class weights_only=True refuses to unpickle


def run_cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_file_gives_one_line_and_changes_nothing(case, tmp_path, capsys, monkeypatch):
    _, setup, status, named, *env = case
    for key, value in (env[0] if env else {}).items():
        monkeypatch.setenv(key, str(tmp_path / value) if key == "BRIDGELIB_CACHE" else value)
    outside(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = setup(tmp_path)
    before = tree(tmp_path)
    code, err = run_cli(argv, capsys)
    assert code == status, err
    assert err.startswith(f"bridge {argv[0]}: error: ") and "\n" not in err, err
    assert "Traceback" not in err and "\x1b" not in err
    for text in named:
        assert text in err, f"{text!r} not in: {err}"
    after = tree(tmp_path)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


def test_debug_shows_the_traceback_of_an_unexpected_error(tmp_path):
    write(tmp_path / "sw" / "sweep.json", "[1, 2]")
    with pytest.raises(AttributeError):
        cli.main(sweep(tmp_path, "--debug"))


# ---- the writer and reader on their own ----------------------------------------------------------


def test_append_replaces_a_hard_linked_log_and_leaves_its_other_name(tmp_path):
    from bridgelib.files import append_bytes
    mine = write(tmp_path / "outside" / "log.jsonl", b'{"mine": 1}\n')
    os.link(mine, tmp_path / "sweeps.jsonl")
    append_bytes(tmp_path / "sweeps.jsonl", b'{"run": 2}\n')
    assert mine.read_bytes() == b'{"mine": 1}\n'
    assert (tmp_path / "sweeps.jsonl").read_bytes() == b'{"mine": 1}\n{"run": 2}\n'


def test_a_file_of_another_user_is_never_replaced(tmp_path):
    from bridgelib.files import UnsafeTarget, atomic_write_bytes
    path = write(tmp_path / "metrics.json", "theirs")
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    os.chown(path, 4321, 4321)
    with pytest.raises(UnsafeTarget, match=r"metrics\.json'.*file of another user \(uid 4321\)"):
        atomic_write_bytes(path, b"ours")
    assert path.read_text() == "theirs"


def test_a_figure_is_saved_through_the_one_writer(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bridgelib.files import UnsafeTarget, save_figure
    fig = plt.figure()
    save_figure(fig, tmp_path / "a.svg")
    assert (tmp_path / "a.svg").read_bytes().lstrip().startswith(b"<?xml")
    photo = write(tmp_path / "photo.png", b"mine")
    link(tmp_path / "b.png", photo)
    with pytest.raises(UnsafeTarget):
        save_figure(fig, tmp_path / "b.png")
    plt.close(fig)
    assert photo.read_bytes() == b"mine"


# ---- one writer per output: the lock --------------------------------------------------------------
HOLD = ("import sys, time\nfrom bridgelib.locks import output_lock\n"
        "with output_lock(sys.argv[1], is_file=sys.argv[2] == '1'):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")
# The same lock as another writer holds it (the protocol of files.output_lock: flock on the
# lock file, the holder's PID in it), without importing the package: 50 ms, not 5 s.
HOLD_BARE = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "os.write(fd, f'{os.getpid()}\\n'.encode())\nprint('held', flush=True)\n"
             "time.sleep(60)\n")


def hold_lock(out: Path, is_file: bool = False, bare: bool = False) -> subprocess.Popen:
    """Another process writing into `out`: it holds the lock until killed."""
    from bridgelib.locks import lock_file_of
    if bare:
        lock_file_of(out, is_file).parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-S", "-c", HOLD_BARE, str(lock_file_of(out, is_file))]
    else:
        argv = [sys.executable, "-c", HOLD, str(out), "1" if is_file else "0"]
    holder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("argv, is_file, where", [
    (lambda t: train(t), False, "run"),
    (lambda t: invert(t), True, "tok.safetensors"),
    (lambda t: sweep(t), False, "sw"),
    (lambda t: generate(t), False, "set"),
], ids=["train", "invert", "sweep", "generate"])
def test_a_second_writer_is_refused_naming_the_first(argv, is_file, where, tmp_path, capsys):
    holder = hold_lock(tmp_path / where, is_file, bare=True)
    try:
        args = argv(tmp_path)
        before = tree(tmp_path)
        code, err = run_cli(args, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 1 and "\n" not in err, err
    assert f"{where}' is being written by another bridgelib process (PID {holder.pid}" in err
    assert tree(tmp_path) == before


def test_a_killed_writers_lock_is_taken_over_and_removed(tmp_path):
    """flock dies with its holder: a SIGKILLed writer's lock file is no lock."""
    from bridgelib.locks import LOCK_NAME, output_lock
    holder = hold_lock(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # left behind by the kill
    with output_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
        with output_lock(tmp_path / "run"):  # re-entrant within the process
            pass
        assert (tmp_path / "run" / LOCK_NAME).exists()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_two_generates_into_one_folder_one_refused_the_set_consistent(tmp_path, capsys):
    """The first generate (another process, guidance 7) holds the folder; the second
    (guidance 3, started while the first runs) is refused naming its PID; what remains is one
    set whose every row was drawn with run.json's options."""
    from bridgelib.locks import LOCK_NAME
    from bridgelib.manifest import read_manifest
    out = tmp_path / "set"
    env = {**os.environ, "BRIDGELIB_PROGRESS": "0"}
    first = subprocess.Popen([sys.executable, "-m", "bridgelib", *generate(tmp_path)[:-2],
                              "--per-class", "2", "--steps", "2", "--guidance", "7",
                              "--batch-size", "5",
                              "--out", str(out)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / LOCK_NAME).exists() or not (out / LOCK_NAME).read_text().strip():
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.05)
        code, err = run_cli(generate(tmp_path, "--guidance", "3"), capsys)
    finally:
        assert first.wait(timeout=240) == 0, first.stderr.read()
    assert code == 1 and f"(PID {first.pid}," in err and "\n" not in err, err
    run = json.loads((out / "run.json").read_text())
    rows = read_manifest(out)
    assert run["options"]["guidance_scale"] == 7.0 and len(rows) == 20
    assert set(rows.guidance_scale) == {7.0} and set(rows.num_inference_steps) == {2}
    assert not (out / LOCK_NAME).exists()


# ---- a stage that goes non-finite stops, and leaves no result ---------------------------------------


def test_a_run_that_goes_nan_stops_and_saves_nothing(tmp_path, capsys, monkeypatch):
    """A model whose loss is NaN from the first step (here: a head of NaN weights, as a damaged
    checkpoint gives) stops the stage in one line; no classifier, no metrics.json."""
    import torch

    import bridgelib.transfer as transfer
    real = transfer.create_classifier

    def damaged(cfg, n, pretrained=True):
        model = real(cfg, n, pretrained)
        if n is not None:
            with torch.no_grad():
                model.get_classifier().weight.fill_(float("nan"))
        return model
    monkeypatch.setattr(transfer, "create_classifier", damaged)
    code, err = run_cli(train(tmp_path, "--set", "train.real.min_steps=3",
                              "--set", "train.real.epochs=1"), capsys)
    assert code == 1 and "\n" not in err, err
    assert "the real stage diverged: the loss became nan at step 1" in err
    assert "nothing of this run was saved" in err
    assert not (tmp_path / "run" / "classifier.safetensors").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_machines_memory_is_read():
    from bridgelib.memory import host_memory
    if not Path("/proc/meminfo").exists():
        pytest.skip("Linux only")
    assert 2**28 < host_memory() < 2**50


def test_a_full_disk_is_found_before_training(tmp_path, capsys, monkeypatch):
    """The write probe of `train --out` writes a block: on a full disk (here the probe's temp
    file is /dev/full, the kernel's own ENOSPC) it is refused before any data is read, where an
    empty probe passed and the run failed at its end."""
    import tempfile

    import bridgelib.transfer
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full to simulate a full disk")
    real = tempfile.mkstemp

    def mkstemp(*args, prefix="", dir=None, **kwargs):
        if prefix == ".write-probe.":
            fd, path = real(*args, prefix=prefix, dir=dir, **kwargs)
            os.close(fd)
            return os.open("/dev/full", os.O_WRONLY), path
        return real(*args, prefix=prefix, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(bridgelib.transfer, "load_dataset", lambda *a, **k: pytest.fail("read"))
    code, err = run_cli(train(tmp_path), capsys)
    assert code == 1 and "\n" not in err, err
    assert err.startswith("bridge train: error: No space left on device: ") and "run'" in err
    assert not (tmp_path / "run").exists() and not list(tmp_path.iterdir())
