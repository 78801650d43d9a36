"""Hostile and careless inputs (issue 17), through the `bridge` command.

Every row is an input a careless or hostile user could give and a guard against it: non-finite
or runaway numbers, paths taken from files that leave their folder, deletions beyond what the
project wrote, image formats that decode to nonsense, and failures that would come only after
the expensive work. Each must exit 2 (a usage error) with exactly one line on stderr
(`bridge <command>: error: ...`, no traceback) holding every `named` string, and every file
that existed before the call must be there after it, byte for byte, with nothing new written.
docs/bad_inputs.md lists these cases by kind: keep them in step.
"""
import json
from pathlib import Path

import pytest

import bridgelib.cli as cli
from cli_helpers import generate, invert, read_only_dir, train


BAG = "008.bag"  # the Bag class's folder in a set: label 8 of Fashion-MNIST, then its slug


def fake_set(root: Path, bad_row=None) -> Path:
    """A synthetic set as `bridge generate` lays it out (one white 32 px image per class of the
    mini target, metadata.jsonl, run.json), with `bad_row` (a line of text) appended."""
    from PIL import Image

    from bridgelib.datasets import MINI_CLASSES
    from bridgelib.manifest import class_folders_of
    lines = []
    for label, (name, folder) in enumerate(zip(MINI_CLASSES, class_folders_of(MINI_CLASSES))):
        (root / folder).mkdir(parents=True)
        Image.new("RGB", (32, 32), "white").save(root / folder / "00000.png")
        lines.append(json.dumps({"file_name": f"{folder}/00000.png", "label": label,
                                 "class_name": name}))
    if bad_row is not None:
        lines.append(bad_row)
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    (root / "run.json").write_text(json.dumps({"options": {"class_names": list(MINI_CLASSES),
                                                           "template": "single"}}))
    return root


def bridged(t, bad_row):
    """`bridge train --recipe bridged` on a set whose manifest ends with `bad_row`."""
    return train(t, "--recipe", "bridged", "--synthetic", str(fake_set(t / "syn", bad_row)))


def dataset(root: Path, classes) -> Path:
    """Your own ImageFolder: three 40 px images per class folder."""
    from PIL import Image
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), "white").save(root / name / f"{i}.png")
    return root


def with_extra(t: Path, extra: str, content: bytes = b"mine") -> Path:
    """A set in t/set, plus a file of the user's at `extra` (relative to the set)."""
    root = fake_set(t / "set")
    (root / extra).parent.mkdir(parents=True, exist_ok=True)
    (root / extra).write_bytes(content)
    return root


def linked_class(t: Path) -> Path:
    """A set whose `bag` class folder is a symlink to the user's photos elsewhere."""
    root = fake_set(t / "set")
    photos = t / "photos"
    photos.mkdir()
    (photos / "00000.png").write_bytes((root / BAG / "00000.png").read_bytes())
    for f in (root / BAG).iterdir():
        f.unlink()
    (root / BAG).rmdir()
    (root / BAG).symlink_to(photos, target_is_directory=True)
    return root


def linked_image(t: Path) -> Path:
    """A set one of whose images is a symlink to a file of the user's."""
    root = fake_set(t / "set")
    (t / "mine.png").write_bytes((root / BAG / "00000.png").read_bytes())
    (root / BAG / "00000.png").unlink()
    (root / BAG / "00000.png").symlink_to(t / "mine.png")
    return root


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height gray pixels (its data cut short): what a reader sees
    before it decodes, and all a careless one needs to exhaust memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def huge_image_set(t: Path, width: int, height: int) -> Path:
    root = fake_set(t / "syn")
    png_header(root / BAG / "00000.png", width, height)
    return root


def with_record(t: Path, text: str) -> Path:
    """A synthetic set whose run.json holds `text`."""
    root = fake_set(t / "syn")
    (root / "run.json").write_text(text)
    return root


def token_file(path: Path, name: str = "<s*>", value: float = 0.1) -> Path:
    import torch
    from safetensors.torch import save_file
    save_file({name: torch.full((1, 64), value)}, path)
    return path


def with_empty_class(root: Path) -> Path:
    dataset(root, ["cat", "dog"])
    (root / "bird").mkdir()
    return root


def split_dataset(root: Path, train_classes, test_classes) -> Path:
    dataset(root / "train", train_classes)
    dataset(root / "test", test_classes)
    return root


def with_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def overwrite(t, *extra):
    return generate(t, "--overwrite", *extra)


# (id, setup(tmp) -> argv, strings the one-line message must hold)
CASES = [
    # --- non-finite numbers: refused by the field's rule wherever they enter -------------------
    ("guidance-inf", lambda t: generate(t, "--guidance", "inf"), ["guidance=inf", "positive number"]),
    ("guidance-nan", lambda t: generate(t, "--guidance", "nan"), ["guidance=nan", "positive number"]),
    ("guidance-set-nan", lambda t: generate(t, "--set", "generation.guidance=nan"),
     ["generation.guidance=nan", "positive number"]),
    ("invert-lr-inf", lambda t: invert(t, "--lr", "inf"), ["lr=inf", "positive number below 10"]),
    ("invert-lr-nan", lambda t: invert(t, "--lr", "nan"), ["lr=nan", "positive number"]),
    ("train-lr-inf", lambda t: train(t, "--set", "train.real.lr=inf"),
     ["train.real.lr=inf", "positive number"]),
    # --- counts capped, the cap in the message --------------------------------------------------
    ("generate-steps-huge", lambda t: generate(t) + ["--steps", "1000000000"],
     ["steps=1000000000", "up to 1,000"]),
    ("invert-steps-huge", lambda t: invert(t, "--steps", "1000000000"),
     ["steps=1000000000", "up to 1,000,000"]),
    ("per-class-huge", lambda t: generate(t) + ["--per-class", "1000000000"],
     ["per_class=1000000000", "up to 100,000"]),
    ("batch-size-huge", lambda t: generate(t, "--batch-size", "100000000"),
     ["batch_size=100000000", "up to 4,096"]),
    ("train-epochs-huge", lambda t: train(t, "--set", "train.real.epochs=1000000000"),
     ["train.real.epochs=1000000000", "up to 10,000"]),
    ("train-seed-negative", lambda t: train(t, "--seed", "-1"), ["seed=-1", "integer >= 0"]),
    ("generate-seed-beyond-numpy", lambda t: generate(t, "--seed", str(2**40)),
     [f"seed={2**40}", "up to 4,294,967,295"]),
    # --- paths taken from files stay inside their folder ---------------------------------------
    ("manifest-row-leaves-the-set",
     lambda t: bridged(t, json.dumps({"file_name": "../../../x/0.sh", "class_name": "bag"})),
     ["line 11", "'../../../x/0.sh'", "<class>/<image>", "outside its set"]),
    ("manifest-row-absolute-path",
     lambda t: bridged(t, json.dumps({"file_name": "/etc/passwd", "class_name": "bag"})),
     ["line 11", "'/etc/passwd'", "outside its set"]),
    ("manifest-row-without-file-name",  # once: a KeyError traceback
     lambda t: bridged(t, json.dumps({"class_name": "bag"})), ["line 11", "no file_name"]),
    ("manifest-row-not-an-object", lambda t: bridged(t, "[1, 2]"),
     ["line 11", "not a JSON object"]),
    ("manifest-row-not-json", lambda t: bridged(t, '{"file_name": "bag/0'),
     ["line 11", "not JSON", "bridge generate"]),
    ("class-folders-one-slug",
     lambda t: generate(t, "--dataset", str(dataset(t / "data", ["Sea Lion", "sea_lion"]))),
     ["'Sea Lion'", "'sea lion'", "'sea_lion'", "rename one"]),
    ("class-folder-empty-slug-meets-a-real-one",  # 日本 falls back to class_001, taken
     lambda t: generate(t, "--dataset", str(dataset(t / "data", ["class_001", "日本"]))),
     ["'日本'", "'class_001'", "rename one"]),
    # --- --overwrite deletes only what the set's own manifest and run.json describe ------------
    ("overwrite-a-set-holding-a-file-of-yours",
     lambda t: (with_extra(t, "notes.txt"), overwrite(t))[1],
     ["set'", "'notes.txt'", "not a file of the synthetic set", "choose another folder"]),
    ("overwrite-a-set-holding-a-folder-of-yours",  # once: every image of every subfolder deleted
     lambda t: (with_extra(t, "holidays/0.png"), overwrite(t))[1], ["'holidays'", "not a file"]),
    ("overwrite-a-class-folder-holding-a-photo-of-yours",
     lambda t: (with_extra(t, "008.bag/photo.jpg"), overwrite(t))[1], ["'008.bag/photo.jpg'"]),
    ("overwrite-a-symlinked-class-folder",  # once: followed, the photos it points to deleted
     lambda t: (linked_class(t), overwrite(t))[1], ["symlink '008.bag'"]),
    ("overwrite-a-symlinked-image", lambda t: (linked_image(t), overwrite(t))[1],
     ["symlink '008.bag/00000.png'"]),
    ("resume-into-a-symlinked-class-folder",  # once: images written through it, outside
     lambda t: (linked_class(t), generate(t))[1], ["symlink '008.bag'", "never through a link"]),
    ("resume-over-a-symlinked-image", lambda t: (linked_image(t), generate(t))[1],
     ["symlink '008.bag/00000.png'"]),
    ("overwrite-a-folder-without-run-json", lambda t: (
        dataset(t / "set", ["cat", "dog"]), overwrite(t))[1],
     ["holds no run.json", "replaces only such a set", "another folder"]),
    ("out-is-the-dataset",  # once: --overwrite wiped the real dataset
     lambda t: overwrite(t, "--dataset", str(dataset(t / "data", ["cat", "dog"])),
                         "--out", str(t / "data")), ["data' is the dataset folder"]),
    ("out-inside-the-dataset",
     lambda t: generate(t, "--dataset", str(dataset(t / "data", ["cat", "dog"])),
                        "--out", str(t / "data" / "syn")), ["is inside the dataset folder"]),
    ("out-contains-the-dataset",
     lambda t: overwrite(t, "--dataset", str(dataset(t / "out" / "data", ["cat", "dog"])),
                         "--out", str(t / "out")), ["out' contains the dataset folder"]),
    # --- images too large to decode: refused before decoding, not decoded full size ------------
    ("image-too-large",  # 8000 x 8000: under PIL's own warning, 64 M pixels
     lambda t: train(t, "--recipe", "bridged", "--synthetic", str(huge_image_set(t, 8000, 8000))),
     ["008.bag/00000.png'", "8000x8000 px", "at most 50,000,000 pixels", "downsize"]),
    ("image-in-pils-warning-zone",  # 10000 x 10000: once decoded full size, 8 at once
     lambda t: train(t, "--recipe", "bridged", "--synthetic",
                     str(huge_image_set(t, 10000, 10000))), ["10000x10000 px", "downsize"]),
    ("image-a-decompression-bomb",  # 20000 x 20000: PIL's own bomb error, now one clear line
     lambda t: train(t, "--recipe", "bridged", "--synthetic",
                     str(huge_image_set(t, 20000, 20000))),
     ["008.bag/00000.png'", "too large to decode", "50,000,000 pixels"]),
    # --- late failures found before the first step --------------------------------------------
    ("synthetic-run-json-a-list",  # once: a traceback after the whole training
     lambda t: train(t, "--recipe", "bridged", "--synthetic", str(with_record(t, "[1, 2]"))),
     ["syn/run.json' is not a JSON object", "expected the run.json that `bridge generate` "
      "writes", "regenerate"]),
    ("synthetic-run-json-corrupt",
     lambda t: train(t, "--recipe", "bridged", "--synthetic", str(with_record(t, '{"opt'))),
     ["syn/run.json' is not JSON", "expected the run.json"]),
    ("synthetic-options-not-an-object",
     lambda t: train(t, "--recipe", "bridged", "--synthetic",
                     str(with_record(t, '{"options": "single"}'))),
     ["syn/run.json' has no options object"]),
    ("train-out-inside-a-file", lambda t: (
        (t / "f").write_text("keep"), train(t) + ["--out", str(t / "f" / "run")])[1],
     ["f/run'", "is inside", "not a folder"]),
    # --- a style token never replaces a word the tokenizer knows, and is finite ----------------
    ("style-token-named-after-a-word",  # once: silently overwrote that word's embedding
     lambda t: generate(t, "--style-token", str(token_file(t / "s.safetensors", "cat"))),
     ["s.safetensors'", "'cat'", "tokenizer's own vocabulary", "'<s*>'"]),
    ("invert-token-named-after-a-word",  # once: learned over the word's embedding
     lambda t: invert(t, "--set", "invert.token=cat"),
     ["invert.token='cat'", "tokenizer's own vocabulary", "'<s*>'"]),
    ("style-token-nan", lambda t: generate(
        t, "--style-token", str(token_file(t / "s.safetensors", value=float("nan")))),
     ["s.safetensors'", "NaN or infinite", "bridge invert"]),
    # --- empty or single classes ----------------------------------------------------------------
    ("dataset-with-one-class",  # once: test_acc 1.0
     lambda t: train(t, "--dataset", str(dataset(t / "data", ["cat"]))),
     ["1 class folder(s) (cat)", "at least 2 classes"]),
    ("generate-for-a-dataset-with-one-class",
     lambda t: generate(t, "--dataset", str(dataset(t / "data", ["cat"]))),
     ["1 class folder(s) (cat)", "at least 2 classes"]),
    ("dataset-with-an-empty-class-folder",
     lambda t: train(t, "--dataset", str(with_empty_class(t / "data"))),
     ["data/bird holds no image files", "add images or remove it"]),
    ("dataset-class-only-in-test",
     lambda t: train(t, "--dataset", str(split_dataset(t / "data", ["cat", "dog"],
                                                        ["cat", "dog", "bird"]))),
     ["class 'bird' has test images", "no training images", "every class needs both"]),
    # --- train --out: nothing of yours replaced without --overwrite -----------------------------
    ("train-out-holds-a-config-json-of-yours",  # once: replaced at the end of the run
     lambda t: (with_file(t / "run" / "config.json", '{"mine": 1}'), train(t))[1],
     ["run'", "'config.json'", "not a file of a `bridge train` run", "--overwrite"]),
    ("train-out-holds-other-files",
     lambda t: (with_file(t / "run" / "notes.txt", "mine"), train(t))[1],
     ["'notes.txt'", "choose another --out or pass --overwrite"]),
    # --- the token and its record are never the same file ---------------------------------------
    ("invert-out-is-its-own-record",
     lambda t: ["invert", "--shots", "1", "--steps", "1", "--out", str(t / "style.json")],
     ["style.json'", "its own training record", "*.safetensors"]),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def run_cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err.strip()


def assert_one_line(code, err, command, named):
    assert code == 2, err
    assert err.startswith(f"bridge {command}: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    for text in named:
        assert text in err, f"{text!r} not in: {err}"


@pytest.mark.parametrize("setup, named", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_gives_one_line_and_loses_nothing(setup, named, tmp_path, capsys):
    argv = setup(tmp_path)
    before = snapshot(tmp_path)
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, argv[0], named)
    after = snapshot(tmp_path)
    assert not [f for f, data in before.items() if after.get(f) != data], "changed or removed"
    assert set(after) == set(before), f"written: {sorted(set(after) - set(before))}"


def test_a_subset_of_a_set_whose_manifest_leaves_it_is_refused(tmp_path):
    """`bridge sweep --synthetic` copies a set's files into its own folder (synthetic_subset):
    a row naming a file outside the set is refused before anything is linked or copied."""
    from bridgelib.manifest import synthetic_subset
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "0.sh").write_text("secret")
    source = fake_set(tmp_path / "syn", json.dumps({"file_name": "../x/0.sh", "label": 0,
                                                    "class_name": "t-shirt"}))
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"line 11 has file_name '\.\./x/0\.sh'") as info:
        synthetic_subset(source, 1, tmp_path / "runs" / "sub")
    assert "\n" not in str(info.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("names, named", [
    (["cat", ".."], ["'..'", "must not be '.' or '..'"]),
    (["sea lion", "sea_lion"], ["'sea lion'", "'sea_lion'", "share the folder"]),
])
def test_export_image_folder_never_leaves_or_merges_folders(names, named, tmp_path):
    import torch

    from bridgelib.data import ImageSet
    from bridgelib.folders import export_image_folder
    images = ImageSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), names)
    with pytest.raises(ValueError) as info:
        export_image_folder(images, tmp_path / "out" / "set")
    assert all(text in str(info.value) for text in named), str(info.value)
    assert not any(tmp_path.rglob("*"))


def test_overwrite_deletes_exactly_the_files_of_the_set(tmp_path):
    """What --overwrite clears: run.json, the manifests, temp files, listed images and stale
    images under the generator's own names; then the empty class folders. Nothing else."""
    from bridgelib.manifest import _clear_folder
    root = fake_set(tmp_path / "set")
    (root / BAG / "00007.png").write_bytes(b"a killed run's image, no manifest row")
    (root / BAG / ".00008.png.x1.tmp").write_bytes(b"partial")
    (root / "metadata.rank1.jsonl").write_text("")
    (tmp_path / "beside.txt").write_text("mine")
    _clear_folder(root)
    assert not any(root.iterdir())
    assert (tmp_path / "beside.txt").read_text() == "mine"


def image_of_mode(path: Path, kind: str) -> Path:
    """A 6 x 6 image whose right answer is mid gray (16-bit) or white (transparent pixels)."""
    import numpy as np
    from PIL import Image
    if kind == "gray16":  # 32768 of 65535: PIL's own conversion clips it to 255, white
        Image.fromarray(np.full((6, 6), 32768, np.uint16)).save(path)
    elif kind == "rgba":  # fully transparent black: dropping alpha gives black
        Image.new("RGBA", (6, 6), (0, 0, 0, 0)).save(path)
    elif kind == "palette":  # a palette whose index 0 is transparent black
        im = Image.new("P", (6, 6), 0)
        im.putpalette([0, 0, 0] * 256)
        im.save(path, transparency=0)
    elif kind == "gray-alpha":
        Image.new("LA", (6, 6), (0, 0)).save(path)
    return path


@pytest.mark.parametrize("kind, value", [("gray16", 128), ("rgba", 255), ("palette", 255),
                                         ("gray-alpha", 255)])
def test_image_modes_decode_to_what_they_show(kind, value, tmp_path):
    """Both loaders (ImageFolder sets and datasets) decode through data.read_rgb."""
    from bridgelib.data import decode_image
    from bridgelib.folders import load_image_folder
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    path = image_of_mode(tmp_path / "imgs" / "cat" / "0.png", kind)
    assert set(decode_image(path, 4).flatten().tolist()) == {value}
    assert set(load_image_folder(tmp_path / "imgs", 4).images.flatten().tolist()) == {value}


def test_a_large_jpeg_decodes_at_a_reduced_scale(tmp_path):
    from PIL import Image

    from bridgelib.data import read_rgb
    Image.new("RGB", (4000, 3000), "red").save(tmp_path / "big.jpg")
    assert read_rgb(tmp_path / "big.jpg", 224).size == (500, 375)  # 1/8 scale, still >= 224


def test_a_read_only_train_out_is_found_before_training(tmp_path, capsys, monkeypatch):
    """`train` writes only at its end: a read-only --out once failed after the whole run."""
    ro = read_only_dir(tmp_path / "ro", monkeypatch)
    import bridgelib.transfer
    monkeypatch.setattr(bridgelib.transfer, "run_recipe", lambda *a, **k: pytest.fail("trained"))
    code, err = run_cli(train(tmp_path) + ["--out", str(ro / "run")], capsys)
    assert code == 1 and err.startswith("bridge train: error: Permission denied: ") \
        and "\n" not in err, err
    assert "ro/run'" in err and "writable" in err
    assert not any(ro.iterdir())


def test_a_read_only_invert_out_is_found_before_the_pipeline_loads(tmp_path, capsys,
                                                                   monkeypatch):
    """`invert` writes its first checkpoint only after checkpoint_every steps."""
    ro = read_only_dir(tmp_path / "ro", monkeypatch)
    import bridgelib.invert
    monkeypatch.setattr(bridgelib.invert, "load_pipeline", lambda *a, **k: pytest.fail("loaded"))
    code, err = run_cli(invert(tmp_path) + ["--out", str(ro / "tok.safetensors")], capsys)
    assert code == 1 and err.startswith("bridge invert: error: Permission denied: ") \
        and "\n" not in err, err
    assert "ro'" in err and "writable" in err
    assert not any(ro.iterdir())


# ---- property tests: generated hostile names never write outside the folder nor lose a file ----

PIECES = ["..", ".", "", " ", "a", "A", "a b", "a_b", "a-b", "a  b", "日本", "ß", "café", "cafe",
          "/", "\\", "x/../y", "../../etc", "/abs", "class_000", "class_001", "C:", "\t", "~",
          ".hidden", "a.png", "00000.png"]


def hostile_name(rng) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))


def inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def test_generated_class_names_get_one_folder_each_inside_the_output(tmp_path):
    import random

    from bridgelib.manifest import class_folders_of
    from bridgelib.prompts import validate_class_names
    rng, accepted = random.Random(17), 0
    for _ in range(2000):
        names = [hostile_name(rng) for _ in range(rng.randint(1, 4))]
        try:
            folders = class_folders_of(validate_class_names(names))
        except ValueError as e:
            assert "\n" not in str(e)
            continue
        accepted += 1
        assert len(set(folders)) == len(folders), (names, folders)
        for f in folders:
            assert f and f not in (".", "..") and "/" not in f and "\\" not in f, (names, f)
            assert inside(tmp_path / f, tmp_path) and (tmp_path / f).parent == tmp_path
    assert accepted > 100  # the property was tested, not only refusals


def test_generated_manifest_names_never_leave_the_set(tmp_path):
    import random

    from bridgelib.manifest import read_manifest
    rng = random.Random(18)
    root = fake_set(tmp_path / "set")
    good = (root / "metadata.jsonl").read_text()
    accepted = 0
    for _ in range(500):
        names = [hostile_name(rng) + rng.choice(["", "/", "/0.png", "/../x"]) + hostile_name(rng)
                 for _ in range(rng.randint(1, 3))]
        rows = "".join(json.dumps({"file_name": n, "class_name": "x"}) + "\n" for n in names)
        (root / "metadata.jsonl").write_text(good + rows)
        try:
            listed = read_manifest(root).file_name
        except ValueError as e:
            assert "\n" not in str(e)
            continue
        accepted += 1
        assert all(inside(root / n, root) for n in listed), list(listed)
    assert accepted > 20


def test_generated_folders_are_never_overwritten_beyond_their_own_files(tmp_path):
    """Random extra files, folders and symlinks (to files and folders outside) in a set:
    clearing it for --overwrite either refuses and changes nothing, or removes only the set's
    own files; nothing outside the set ever changes."""
    import random
    import shutil

    from bridgelib.manifest import _clear_folder
    rng = random.Random(19)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "00000.png").write_bytes(b"yours")
    (outside / "notes.txt").write_text("yours")
    cleared = 0
    for i in range(60):
        root = fake_set(tmp_path / f"set{i}")
        own = snapshot(root)
        for _ in range(rng.randint(0, 2)):
            folder = root / rng.choice(["", "bag", "t-shirt", "mine", "日本"])
            folder.mkdir(exist_ok=True)
            target = folder / rng.choice(["00001.png", "notes.txt", ".x.tmp", "photo.jpg", "..."])
            kind = rng.choice(["file", "file-link", "folder-link"])
            if target.exists() or target.is_symlink():
                continue
            if kind == "file":
                target.write_bytes(b"yours")
            elif kind == "file-link":
                target.symlink_to(outside / "00000.png")
            else:
                target.symlink_to(outside, target_is_directory=True)
        before_outside, before = snapshot(outside), snapshot(root)
        links = [p for p in root.rglob("*") if p.is_symlink()]
        try:
            _clear_folder(root)
        except ValueError as e:
            assert "\n" not in str(e)
            assert snapshot(root) == before and all(p.is_symlink() for p in links)
        else:
            cleared += 1
            left = snapshot(root)
            assert not links  # a folder holding a symlink is never cleared
            assert all(before[f] == data for f, data in left.items())
            assert set(before) - set(left) <= set(own) | {
                f for f in before if f.endswith((".tmp", "00001.png"))}
        assert snapshot(outside) == before_outside
        shutil.rmtree(root)
    assert cleared > 5


def test_generated_export_names_stay_inside_the_export(tmp_path):
    import random

    import torch

    from bridgelib.data import ImageSet
    from bridgelib.folders import export_image_folder
    rng, written = random.Random(20), 0
    for i in range(300):
        names = [hostile_name(rng) for _ in range(2)]
        images = ImageSet(torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 1]), names)
        root = tmp_path / "exports" / f"e{i}"
        try:
            export_image_folder(images, root)
        except ValueError as e:
            assert "\n" not in str(e)
            continue
        written += 1
        assert len([p for p in root.iterdir() if p.is_dir()]) == 2, names
    assert written > 30
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(inside(p, tmp_path / "exports") and len(p.relative_to(tmp_path / "exports").parts)
               == 3 for p in files)


def test_a_read_only_dataset_is_read_and_never_written_into(tmp_path, capsys, monkeypatch):
    """`--dataset PATH` once wrote PATH/splits/: a read-only dataset could not be used. Its
    split files now live in the cache; here every write inside the dataset is refused (as
    root, whom chmod does not stop, through the temp file every write makes), and the run gets
    past the dataset to the next check (a synthetic set of other classes, before training)."""
    data = read_only_dir(dataset(tmp_path / "data", ["cat", "dog"]), monkeypatch)
    monkeypatch.setenv("BRIDGELIB_CACHE", str(tmp_path / "cache"))
    syn = fake_set(tmp_path / "syn")
    before = snapshot(data)
    code, err = run_cli(train(tmp_path, "--dataset", str(data), "--recipe", "bridged",
                              "--synthetic", str(syn)), capsys)
    data.chmod(0o755)
    assert code == 2 and "do not match the dataset's (cat, dog)" in err, err
    assert snapshot(data) == before and not (data / "splits").exists()
    assert list((tmp_path / "cache" / "splits").glob("data-*/imagefolder_test0.2_seed0.json"))


def test_a_set_larger_than_memory_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    """Every image of a set is held decoded: a set the machine cannot hold is refused, with
    the estimate, before the first image is decoded (here the machine has 1 MiB available)."""
    import bridgelib.data
    import bridgelib.folders
    monkeypatch.setattr(bridgelib.data, "available_memory", lambda: 2**20)
    monkeypatch.setattr(bridgelib.folders, "_read_folder", lambda *a, **k: pytest.fail("decoded"))
    syn = fake_set(tmp_path / "syn")
    before = snapshot(tmp_path)
    code, err = run_cli(train(tmp_path, "--recipe", "bridged", "--synthetic", str(syn),
                              "--set", "image_size=512"), capsys)
    assert_one_line(code, err, "train", ["syn'", "10 images at 512 px need 15 MiB",
                                         "1 MiB of memory available", "fewer images"])
    assert snapshot(tmp_path) == before


def test_a_killed_train_runs_leftovers_do_not_block_its_rerun(tmp_path):
    """What a killed train leaves (config.json, history.csv, a temp file; no metrics.json) is
    its own: the rerun is not refused (the SIGKILL suite reruns into it)."""
    from bridgelib.transfer import _refuse_foreign_files
    from bridgelib.config import get_config
    out = tmp_path / "run"
    get_config("mini").save(out / "config.json")
    (out / "history.csv").write_text("stage,epoch\n")
    (out / ".metrics.json.x1.tmp").write_text("")
    _refuse_foreign_files(str(out))  # not refused


def test_a_set_larger_than_the_free_disk_is_refused_before_drawing(tmp_path, capsys, monkeypatch):
    """The set's size on disk is estimated before the pipeline loads: a disk that cannot hold it
    (here 1 MB free for 1,000 images) is refused in one line, and nothing is written."""
    import collections
    import bridgelib.files
    import bridgelib.pipeline
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(bridgelib.files.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 10**6))
    monkeypatch.setattr(bridgelib.pipeline, "load_pipeline", lambda *a, **k: pytest.fail("loaded"))
    before = snapshot(tmp_path)
    code, err = run_cli(["generate", "--per-class", "100", "--steps", "1",
                         "--out", str(tmp_path / "set")], capsys)
    assert_one_line(code, err, "generate", ["100 images per class at 32 px need about",
                                            "0.001 GB free", "fewer images", "nothing was written"])
    assert snapshot(tmp_path) == before
