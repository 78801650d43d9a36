"""Bad inputs, one table: the `bridge` command and the notebook-facing functions.

Every row is a bad input and what its error must say. A CLI row must exit with status 2 (a
usage error, refused before any work) or 1 (a file the run met is missing or damaged, or the
system refused a write: RUNTIME_FAILURES) and one line on stderr (`bridge <command>: error:
...`, no traceback); a function row must raise a
ValueError / OSError / RuntimeError with a one-line message. Either way the message holds every
`named` string (the bad value and what would be valid), every file that existed before the call
is still there, byte for byte, and no file was written (but by a row that fails part-way).
docs/bad_inputs.md is this table in prose: keep them in step.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import bridgelib.cli as cli
from cli_helpers import generate, invert, read_only_dir, train
from bridgelib.config import DATA_DIR, get_config
from bridgelib.datasets import MINI_CLASSES

MINI_GENERATOR = DATA_DIR / "mini-generator"


# ---- setups: each returns the argv (CLI) or a no-argument callable (function) -----------------

def setting(field: str, value) -> list[str]:
    """The CLI's arguments that set a config field: --set FIELD=VALUE."""
    return ["--set", f"{field}={value}"]


def token_file(path: Path, width: int = 64, tensors: int = 1) -> Path:
    save_file({f"<t{i}>": torch.zeros(1, width) for i in range(tensors)}, path)
    return path


def fake_checkpoint(folder: Path, **settings) -> None:
    folder.mkdir(parents=True)
    torch.save({"step": 4, "settings": {"token": "<s*>", "initializer": "style",
                                        "num_vectors": 1, **settings}},
               folder / "step_000004.pt")


def image_folder(root: Path, classes, broken: bool = False) -> Path:
    """One white image per class; broken=True: the first class's only image is unreadable
    (one broken image among good ones is skipped with a warning, not an error)."""
    for name in classes:
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), "white").save(root / name / "0.png")
    if broken:
        (root / classes[0] / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def synthetic_set(out: Path) -> Path:
    """A real (tiny) `bridge generate` set: 1 image per digit, 1 sampler step."""
    from bridgelib.generate import generate_synthetic_set
    return generate_synthetic_set(get_config("mini"), out, 1, steps=1, batch_size=10,
                                  progress_bar=False)


def disk_full_after(mp, n: int) -> None:
    """The disk fills up after `n` generated images: the temp file of the next one is /dev/full,
    so its write fails with the kernel's own ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full to simulate a full disk")
    real, pngs = tempfile.mkstemp, []

    def mkstemp(*args, prefix="", dir=None, **kwargs):
        if prefix.endswith(".png."):
            pngs.append(prefix)
            if len(pngs) > n:
                return os.open("/dev/full", os.O_WRONLY), str(Path(dir) / f"{prefix}full.tmp")
        return real(*args, prefix=prefix, dir=dir, **kwargs)
    mp.setattr(tempfile, "mkstemp", mkstemp)


def corrupt_copy(src: Path, dst: Path, member: str, truncate: bool = False) -> Path:
    """A copy of a weights folder with one file damaged: cut short, or 64 bytes zeroed."""
    shutil.copytree(src, dst)
    f = dst / member
    data = bytearray(f.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\0" * 64
    f.chmod(0o644)
    f.write_bytes(bytes(data[:5000] if truncate else data))
    return dst


def run_dir(path: Path) -> Path:
    path.mkdir()
    (path / "metrics.json").write_text('{"test_acc": 0.5}\n')
    return path


def api_generate(**kw):
    from bridgelib.generate import generate_synthetic_set
    return lambda t, mp: lambda: generate_synthetic_set(get_config("mini"), t / "set", **{
        "per_class": 1, **kw})


def api_style_token_other_encoder(t, mp):
    from bridgelib.pipeline import load_pipeline, load_style_token
    pipe, wide = load_pipeline(get_config("mini")), token_file(t / "wide.safetensors", width=768)
    return lambda: load_style_token(wide, pipe)


def api_learn_lr_string(t, mp):
    from bridgelib.datasets import load_dataset
    from bridgelib.invert import learn_style_token
    images = load_dataset("fashion-mnist", "train", shots=1)
    return lambda: learn_style_token(get_config("mini"), images, t / "tok.safetensors", lr="0.1")


def api_corrupt_image_folder(t, mp):
    from bridgelib.folders import load_image_folder
    root = image_folder(t / "imgs", ["cat", "dog"], broken=True)
    return lambda: load_image_folder(root, 32)


# (id, setup(tmp, monkeypatch) -> argv or callable, strings the one-line message must hold)
CASES = [
    # --- choices: profile, dataset, recipe, template -------------------------------------------
    ("unknown-profile", lambda t, mp: train(t, "--profile", "big"),
     ["'big'", "mini, workshop, paper"]),
    ("unknown-dataset", lambda t, mp: train(t, "--dataset", "cifar"), ["'cifar'", "fashion-mnist"]),
    ("unknown-recipe", lambda t, mp: train(t) + ["--recipe", "bridged+"],
     ["'bridged+'", "vanilla, mixed, bridged, bridged-reinit, bridged++"]),
    ("recipe-needs-synthetic", lambda t, mp: train(t) + ["--recipe", "bridged++"],
     ["'bridged++'", "--synthetic", "'vanilla'"]),
    ("sweep-unknown-recipe-after-a-good-one",
     lambda t, mp: ["sweep", "--recipes", "vanilla", "bridged+", "--out", str(t / "runs")],
     ["'bridged+'", "vanilla, mixed"]),
    ("unknown-template", lambda t, mp: generate(t, "--template", "fancy"),
     ["'fancy'", "single", "multi", "dsi"]),
    ("api-unknown-template", api_generate(template="fancy"), ["'fancy'", "single, multi, dsi"]),
    ("dsi-without-style-token", lambda t, mp: generate(t, "--template", "dsi"),
     ["'dsi'", "--style-token"]),
    ("unknown-config-field", lambda t, mp: lambda: get_config(**{"train.rael.epochs": 3}),
     ["'train.rael.epochs'", "valid fields of 'train'", "real, synthetic"]),
    # --- numbers: shots, guidance, steps, learning rate, counts --------------------------------
    ("shots-zero", lambda t, mp: train(t) + ["--shots", "0"], ["shots=0", "'full'"]),
    ("shots-above-pool", lambda t, mp: train(t) + ["--shots", "5000"], ["shots=5000", "1..", "'full'"]),
    ("shots-not-a-number", lambda t, mp: train(t) + ["--shots", "abc"], ["shots='abc'", "'full'"]),
    ("per-class-zero", lambda t, mp: generate(t) + ["--per-class", "0"],
     ["per_class=0", "positive integer"]),
    ("guidance-negative", lambda t, mp: generate(t, "--guidance", "-1"),
     ["guidance=-1.0", "positive number"]),
    ("steps-zero", lambda t, mp: generate(t) + ["--steps", "0"], ["steps=0", "positive integer"]),
    ("invert-steps-zero", lambda t, mp: invert(t, "--steps", "0"), ["steps=0", "positive"]),
    ("invert-lr-negative", lambda t, mp: invert(t, "--lr", "-1"), ["lr=-1.0", "positive"]),
    ("seed-not-an-integer", lambda t, mp: train(t, "--seed", "x"), ["'x'", "int"]),
    ("sweep-seeds-not-integers",
     lambda t, mp: ["sweep", "--seeds", "0", "one", "--out", str(t / "runs")], ["'one'", "int"]),
    # --- wrong types in notebook calls ---------------------------------------------------------
    ("api-per-class-string", api_generate(per_class="10"), ["per_class='10'", "positive integer"]),
    ("api-config-value-string", lambda t, mp: lambda: get_config(**{"train.real.epochs": "5"}),
     ["train.real.epochs='5'", "positive int"]),
    ("api-lr-string", api_learn_lr_string, ["lr='0.1'", "positive"]),
    # --- class names ---------------------------------------------------------------------------
    ("duplicate-class-names", api_generate(class_names=["cat", "dog", "cat"]),
     ["'cat'", "twice", "unique"]),
    ("slash-in-class-name", api_generate(class_names=["cat", "cats/dogs"]),
     ["'cats/dogs'", "'/'"]),
    ("class-names-sharing-a-folder", api_generate(class_names=["Sea Lion", "sea lion"]),
     ["'Sea Lion'", "'sea lion'", "'sea_lion'", "rename"]),
    ("synthetic-classes-mismatch",
     lambda t, mp: train(t, "--synthetic", str(image_folder(t / "syn", ["cat", "dog"])),
                         "--recipe", "bridged"), ["cat, dog", "t-shirt"]),
    # --- missing or corrupted files ------------------------------------------------------------
    ("synthetic-folder-missing",
     lambda t, mp: train(t, "--recipe", "bridged", "--synthetic", str(t / "nowhere")),
     ["nowhere'", "does not exist"]),
    ("synthetic-image-corrupted",
     lambda t, mp: train(t, "--recipe", "bridged", "--synthetic", str(image_folder(
         t / "syn", list(MINI_CLASSES), broken=True))),
     ["t-shirt'", "0 readable", "0.png", "at least 1"]),
    ("api-image-corrupted", api_corrupt_image_folder, ["cat'", "0 readable", "0.png", "at least 1"]),
    ("backbone-weights-missing",
     lambda t, mp: train(t, *setting("backbone_weights", t / "none")),
     ["model.safetensors", "bridge mini build --only backbone"]),
    ("backbone-weights-corrupted",
     lambda t, mp: train(t, *setting("backbone_weights", corrupt_copy(
         DATA_DIR / "mini-backbone", t / "bb", "model.safetensors"))),
     ["corrupted", "bridge mini build --only backbone"]),
    ("generator-missing",
     lambda t, mp: generate(t, *setting("generation.model", t / "gen")),
     ["gen'", "does not exist", "bridge mini build"]),
    ("generator-weights-corrupted",
     lambda t, mp: generate(t, *setting("generation.model", corrupt_copy(
         MINI_GENERATOR, t / "gen", "unet/diffusion_pytorch_model.safetensors", truncate=True))),
     ["gen'", "cannot be loaded", "bridge mini build"]),
    ("style-token-missing", lambda t, mp: generate(t, "--style-token", str(t / "s.safetensors")),
     ["s.safetensors'", "does not exist", "bridge invert"]),
    ("style-token-corrupted",
     lambda t, mp: generate(t, "--style-token", str((t / "s.safetensors").write_bytes(b"junk")
                                                    and t / "s.safetensors")),
     ["s.safetensors'", "not a safetensors file", "bridge invert"]),
    ("style-token-two-tensors",
     lambda t, mp: generate(t, "--style-token", str(token_file(t / "s.safetensors", tensors=2))),
     ["2 tensors", "bridge invert"]),
    ("style-token-for-another-text-encoder",
     lambda t, mp: generate(t, "--style-token", str(token_file(t / "s.safetensors", 768))),
     ["width 768", "expects 64"]),
    ("api-style-token-for-another-text-encoder", api_style_token_other_encoder,
     ["width 768", "expects 64"]),
    ("style-token-unknown-word", lambda t, mp: generate(t, "--style-token", "<nope>"),
     ["'<nope>'", "neither a file nor a token"]),
    # --- output folders ------------------------------------------------------------------------
    ("out-is-a-file",
     lambda t, mp: generate(t) + ["--out", str((t / "f").write_text("keep") and t / "f")],
     ["f'", "not a folder", "another folder"]),
    ("out-not-empty-no-run", lambda t, mp: (
        (t / "set").mkdir(), (t / "set" / "notes.txt").write_text("mine"), generate(t))[2],
     ["holds no run.json", "--overwrite", "another folder"]),
    ("out-holds-another-set",
     lambda t, mp: (synthetic_set(t / "set"), generate(t, "--guidance", "7"))[1],
     ["guidance_scale", "7.0", "--overwrite", "another folder"]),
    ("out-holds-a-training-run", lambda t, mp: (run_dir(t / "run"), train(t))[1],
     ["already holds a run", "--out", "--overwrite"]),
    ("invert-out-exists", lambda t, mp: (
        (t / "tok.safetensors").write_bytes(b"old token"), invert(t))[1],
     ["tok.safetensors' exists", "--overwrite", "--resume"]),
    ("invert-unfinished-run-without-resume", lambda t, mp: (
        fake_checkpoint(t / "tok_checkpoints", lr=5e-3), invert(t))[1],
     ["tok_checkpoints", "--resume", "--overwrite"]),
    ("invert-resume-with-other-settings", lambda t, mp: (
        fake_checkpoint(t / "tok_checkpoints", lr=0.5), invert(t, "--resume"))[1],
     ["lr=0.5", "0.005", "--overwrite"]),
    ("out-read-only",
     lambda t, mp: generate(t) + ["--out", str(read_only_dir(t / "ro", mp))],
     ["Permission denied", "ro/run.json", "writable"]),
    ("out-disk-full", lambda t, mp: (disk_full_after(mp, 3), generate(t))[1],
     ["No space left on device", "00000.png", "free space"]),
    ("report-without-runs",
     lambda t, mp: ["report", "--runs", str((t / "empty").mkdir() or t / "empty"),
                    "--out", str(t / "rep")], ["no runs", "metrics.json"]),
]


# Rows that fail part-way through a run (what they wrote before failing is kept); every other
# row fails before writing any file.
WRITES_BEFORE_FAILING = {"out-disk-full"}
# CLI rows that exit with status 1, a failure of the run: a file it needs is missing or damaged,
# or the system refused a write. Every other CLI row is a usage error: status 2.
RUNTIME_FAILURES = {"synthetic-folder-missing", "backbone-weights-missing",
                    "backbone-weights-corrupted", "generator-missing",
                    "generator-weights-corrupted", "style-token-missing", "out-read-only",
                    "out-disk-full", "report-without-runs"}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("setup, named", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_loses_nothing(setup, named, tmp_path, monkeypatch, capsys,
                                                    request):
    call = setup(tmp_path, monkeypatch)
    before = snapshot(tmp_path)
    capsys.readouterr()
    if isinstance(call, list):
        try:
            code = cli.main(call)
        except SystemExit as e:  # argparse's own errors
            code = e.code
        err = capsys.readouterr().err.strip()
        assert code == (1 if request.node.callspec.id in RUNTIME_FAILURES else 2), err
        assert err.startswith(f"bridge {call[0]}: error: ") and "\n" not in err, err
        message = err
    else:
        with pytest.raises((ValueError, OSError, RuntimeError)) as info:
            call()
        message = str(info.value)
        assert "\n" not in message, message
    assert "Traceback" not in message
    for text in named:
        assert text in message, f"{text!r} not in: {message}"
    after = snapshot(tmp_path)
    lost = [name for name, data in before.items() if after.get(name) != data]
    assert not lost, f"changed or removed: {lost}"
    if request.node.callspec.id not in WRITES_BEFORE_FAILING:
        assert set(after) == set(before), f"written: {sorted(set(after) - set(before))}"


def test_disk_full_keeps_what_was_written_and_a_rerun_completes(tmp_path, monkeypatch, capsys):
    from bridgelib.manifest import read_manifest
    argv = generate(tmp_path)
    disk_full_after(monkeypatch, 3)
    assert cli.main(argv) == 1  # a failure met by the run
    kept = read_manifest(tmp_path / "set")
    assert len(kept) == 3 and all((tmp_path / "set" / f).is_file() for f in kept.file_name)
    before = {f: (tmp_path / "set" / f).read_bytes() for f in kept.file_name}
    monkeypatch.undo()  # space freed
    assert cli.main(argv) == 0
    assert len(read_manifest(tmp_path / "set")) == 10
    assert all((tmp_path / "set" / f).read_bytes() == b for f, b in before.items())
