"""Your own ImageFolder: the check reports what a run would meet, refuses what no run can use in
one line, and every loader skips an unreadable file by name; `bridge --dataset DIR` reads it."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from bridgelib.data import ImageSet
from bridgelib.folders import (FOLDER_LAYOUT, check_image_folder, export_image_folder,
                               load_image_folder)
from bridgelib.mini.fashion import load_mini_part
from bridgelib.splits import kshot_subset

CLASSES = ("cat", "dog")


def write_folder(root, per_class=3, size=(40, 32)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            px = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8) + np.uint8(100 * c)
            Image.fromarray(px).save(root / name / f"{i}.png")
    return root


def corrupt(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # a PNG header, then nothing
    return path


def refused(call, *needles):
    """The call raises one ValueError line holding every needle."""
    with pytest.raises(ValueError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return err.value


def test_corrupt_file_is_reported_by_name_and_skipped(tmp_path):
    root = write_folder(tmp_path / "mine")
    corrupt(root / "cat" / "scan_0042.png")
    report = check_image_folder(root)
    assert report.classes == list(CLASSES)
    assert report.counts == {"cat": 3, "dog": 3}
    assert report.broken == report.skipped == ["cat/scan_0042.png"]
    assert report.empty == [] and report.odd == {}
    assert "scan_0042.png" in str(report)
    row = report.table().set_index("class").loc["cat"]
    assert row["images"] == 3 and row["broken_files"] == ["scan_0042.png"]
    with pytest.warns(UserWarning, match="scan_0042.png"):
        images = load_image_folder(root, 16)
    assert len(images) == 6 and images.images.shape == (6, 3, 16, 16)
    assert images.class_names == list(CLASSES) and images.labels.tolist() == [0] * 3 + [1] * 3


def test_missing_folder_is_one_line_naming_it_and_the_layout(tmp_path):
    err = refused(lambda: check_image_folder(tmp_path / "nope"), "nope", "does not exist",
                  FOLDER_LAYOUT)
    assert isinstance(err, FileNotFoundError)  # and a ValueError, like every bad folder
    refused(lambda: load_image_folder(tmp_path / "nope", 8), "nope", "<root>/<class>/<image>")


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    refused(lambda: check_image_folder(tmp_path / "empty"), "empty", "is empty", FOLDER_LAYOUT)
    refused(lambda: load_image_folder(tmp_path / "empty", 8), "is empty")


def test_images_without_class_folders_are_refused(tmp_path):
    root = write_folder(tmp_path / "mine")
    refused(lambda: check_image_folder(root / "cat"), "cat", "3 image(s) but no class folders",
            FOLDER_LAYOUT)


def test_class_with_only_broken_files_is_refused_naming_it(tmp_path):
    root = write_folder(tmp_path / "mine")
    for f in (root / "dog").iterdir():
        f.unlink()
    corrupt(root / "dog" / "bad.png")
    refused(lambda: check_image_folder(root), str(root / "dog"), "0 readable image(s)",
            "bad.png", "at least 1")
    refused(lambda: load_image_folder(root, 8), "dog", "bad.png")
    report = check_image_folder(root, min_per_class=0)  # report instead of refusing
    assert report.empty == ["dog"] and report.broken == ["dog/bad.png"]
    refused(lambda: check_image_folder(root, min_per_class=4), "cat", "at least 4")
    refused(lambda: check_image_folder(root, min_per_class=-1), "min_per_class=-1")


def test_odd_sizes_and_non_images_are_reported_not_refused(tmp_path):
    root = write_folder(tmp_path / "mine")
    Image.new("RGB", (8, 8)).save(root / "cat" / "tiny.png")
    Image.new("L", (200, 40)).save(root / "dog" / "banner.jpg")
    (root / "dog" / "notes.txt").write_text("labels checked by hand")
    (root / "dog" / ".DS_Store").write_bytes(b"\0")
    report = check_image_folder(root)
    assert report.odd == {"cat/tiny.png": "8x8 px, tiny", "dog/banner.jpg": "200x40 px, elongated"}
    assert report.ignored == ["dog/notes.txt"]
    assert report.counts == {"cat": 4, "dog": 4} and report.sizes["40x32"] == 6
    assert len(load_image_folder(root, 8)) == 8  # odd images still load (grey -> RGB)


def test_train_test_layout_is_checked_split_by_split(tmp_path):
    write_folder(tmp_path / "mine" / "train")
    write_folder(tmp_path / "mine" / "test", per_class=2)
    corrupt(tmp_path / "mine" / "test" / "dog" / "x.png")
    report = check_image_folder(tmp_path / "mine")
    table = report.table()
    assert sorted(set(table["split"])) == ["test", "train"] and len(table) == 4
    assert report.counts == {"cat": 5, "dog": 5} and report.broken == ["test/dog/x.png"]
    assert "train 6" in str(report) and "test 4" in str(report)
    refused(lambda: load_image_folder(tmp_path / "mine", 8), "train and test", "load each one")
    assert len(load_image_folder(tmp_path / "mine" / "train", 8)) == 6


def test_synthetic_set_reads_only_the_classes_its_metadata_lists(tmp_path):
    root = write_folder(tmp_path / "syn", per_class=2)
    (root / "half_written_class").mkdir()  # an interrupted first image leaves only a temp file
    (root / "half_written_class" / ".00000.png.tmp").write_bytes(b"")
    rows = [{"file_name": f"{c}/{i}.png", "class_name": f"a {c}"} for c in CLASSES for i in range(2)]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    images = load_image_folder(root, 8, ["a dog", "a cat"])
    assert images.class_names == ["a dog", "a cat"] and images.labels.tolist() == [1, 1, 0, 0]


def test_export_round_trips_and_never_replaces_other_files(tmp_path):
    pool = load_mini_part("pool")
    subset = kshot_subset(pool, 2, seed=0)
    root = export_image_folder(subset, tmp_path / "fashion")
    assert sorted(p.name for p in root.iterdir())[:2] == ["ankle_boot", "bag"]
    back = load_image_folder(root, 32)
    order = [back.class_names.index(n.replace(" ", "_")) for n in subset.class_names]
    assert torch.equal(back.images, subset.images[torch.argsort(torch.tensor(order)[subset.labels],
                                                                stable=True)])
    with pytest.raises(FileExistsError, match="not empty"):
        export_image_folder(subset, root)
    zeros = subset.subset(torch.nonzero(subset.labels == 0).flatten())
    export_image_folder(zeros, root, class_names=[str(d) for d in range(10)], overwrite=True)
    assert sorted(p.name for p in root.iterdir()) == ["0"]
    (root / "README.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="README.txt"):
        export_image_folder(subset, root, overwrite=True)
    assert (root / "README.txt").exists()
    with pytest.raises(ValueError, match="class names"):
        export_image_folder(subset, tmp_path / "x", class_names=["a", "b"])


# ---------------------------------------------------------------- bridge --dataset DIR
def test_dataset_option_takes_a_name_or_a_folder(tmp_path):
    from bridgelib.cli import dataset_overrides
    assert dataset_overrides("fashion-mnist") == {"dataset": "fashion-mnist"}
    assert dataset_overrides("pets") == {"dataset": "pets"}
    write_folder(tmp_path / "mine")
    assert dataset_overrides(str(tmp_path / "mine")) == {"dataset": "imagefolder",
                                                         "data_root": str(tmp_path / "mine")}
    refused(lambda: dataset_overrides(str(tmp_path / "nope")), "nope", "neither a dataset name",
            "fashion-mnist, aircraft", "PATH/<class>/<image>")


def test_bridge_train_reads_your_folder(tmp_path, capsys):
    import bridgelib.cli as cli
    tiny = ["--set", "train.real.epochs=1", "--set", "train.real.min_steps=2"]
    data = tmp_path / "my_fashion"
    export_image_folder(kshot_subset(load_mini_part("pool"), 2, seed=0), data / "train")
    export_image_folder(kshot_subset(load_mini_part("test"), 1, seed=0), data / "test")
    corrupt(data / "train" / "sneaker" / "bad.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's warning naming bad.png
        code = cli.main(["train", "--dataset", str(data), "--recipe", "vanilla",
                         "--out", str(tmp_path / "run"), *tiny])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "imagefolder" and metrics["train_images"] == 20
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data_root"] == str(data)
    code = cli.main(["train", "--dataset", str(tmp_path / "none"), "--recipe", "vanilla",
                     "--out", str(tmp_path / "r2"), *tiny])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "none" in err and "\n" not in err and not (tmp_path / "r2").exists()


def test_bridge_generate_names_classes_from_your_folder(tmp_path, tiny_model):
    import bridgelib.cli as cli
    data = write_folder(tmp_path / "pets")
    (data / "cat").rename(data / "tabby_cat")
    out = tmp_path / "syn"
    assert cli.main(["generate", "--dataset", str(data), "--per-class", "1", "--steps", "2",
                     "--out", str(out), "--set", f"generation.model={tiny_model}"]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["class_name"] for r in rows) == ["dog", "tabby cat"]
    assert isinstance(load_image_folder(out, 8, ["dog", "tabby cat"]), ImageSet)
