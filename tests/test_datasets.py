"""The dataset registry on tiny fake copies of each dataset, laid out as torchvision expects.

Every torchvision class here loads the fake copy with download=False (their checks only look
for folders), except Flowers-102, whose .mat files torchvision md5-checks: bridgelib reads that
layout itself, and the test covers that reader. Nothing downloads.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from bridgelib import datasets as ds
from bridgelib import splits
from bridgelib.data import ImageSet, decode_image
from bridgelib.folders import check_image_folder
from bridgelib.splits import kshot_subset

SIZE = 8


def _img(path, seed=0, w=12, h=16):
    """A tiny non-square image (tests the resize + centre crop), JPEG or PNG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    px = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(px).save(path)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_aircraft(root):
    d = root / "fgvc-aircraft-2013b" / "data"
    classes = ["707-320", "A300B4", "Boeing 717"]
    _write(d / "variants.txt", "\n".join(classes) + "\n")
    for split, n in (("trainval", 2), ("test", 1)):
        lines = []
        for c, name in enumerate(classes):
            for i in range(n):
                image_id = f"{split[:2]}{c}{i}"
                _img(d / "images" / f"{image_id}.jpg", c)
                lines.append(f"{image_id} {name}")
        _write(d / f"images_variant_{split}.txt", "\n".join(lines) + "\n")
    return 6, 3, ["707 320", "Airbus A300B4 aircraft", "Boeing 717"]


def make_cars(root):
    from scipy.io import savemat
    base = root / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Ram C/V Cargo Van Minivan 2012"]
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)})
    for folder, mat, n in (("cars_train", base / "devkit" / "cars_train_annos.mat", 3),
                           ("cars_test", base / "cars_test_annos_withlabels.mat", 2)):
        annos = np.zeros(len(names) * n, dtype=[("bbox_x1", "O"), ("class", "O"), ("fname", "O")])
        for k in range(len(annos)):
            fname = f"{k + 1:05d}.jpg"
            _img(base / folder / fname, k)
            annos[k] = (0, k % len(names) + 1, fname)
        savemat(mat, {"annotations": annos})
    return 6, 4, ["AM General Hummer SUV 2000", "Ram C V Cargo Van Minivan 2012"]


def make_food101(root):
    base = root / "food-101"
    meta = {"train": {}, "test": {}}
    for c, name in enumerate(["apple_pie", "beignets", "club_sandwich"]):
        for split, ids in (("train", range(3)), ("test", range(3, 5))):
            meta[split][name] = [f"{name}/{i}" for i in ids]
            for i in ids:
                _img(base / "images" / name / f"{i}.jpg", c)
    for split in meta:
        _write(base / "meta" / f"{split}.json", json.dumps(meta[split]))
    _write(base / "meta" / "classes.txt", "\n".join(meta["train"]) + "\n")
    return 9, 6, ["apple pie", "beignets pastry", "club sandwich food"]


def make_dtd(root):
    base = root / "dtd" / "dtd"
    lines = {"train1": [], "val1": [], "test1": []}
    for c, name in enumerate(["banded", "bumpy", "lined"]):
        for i, part in enumerate(("train1", "val1", "test1", "test1")):
            _img(base / "images" / name / f"{name}_{i:04d}.jpg", c)
            lines[part].append(f"{name}/{name}_{i:04d}.jpg")
    for part, rows in lines.items():
        _write(base / "labels" / f"{part}.txt", "\n".join(rows) + "\n")
    return 6, 6, ["banded texture", "bumpy texture", "lined texture"]


def make_sun397(root):
    base = root / "SUN397"
    classes = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"]
    _write(base / "ClassName.txt", "\n".join(classes) + "\n")
    for c, name in enumerate(classes):
        for i in range(4):
            _img(base / name.lstrip("/") / f"sun_{c}{i}.jpg", c)
    return 6, 6, ["abbey", "apartment building (outdoor)", "bakery (shop)"]


def make_caltech101(root):
    base = root / "caltech101" / "101_ObjectCategories"
    for c, name in enumerate(["BACKGROUND_Google", "Faces_easy", "accordion", "yin_yang"]):
        for i in range(1, 5):
            _img(base / name / f"image_{i:04d}.jpg", c)
    return 6, 6, ["faces easy", "accordion", "yin yang"]


def make_pets(root):
    base = root / "oxford-iiit-pet"
    breeds = [("Abyssinian", 1), ("american_bulldog", 2), ("boxer", 2)]
    for split, ids in (("trainval", (1, 2)), ("test", (3,))):
        lines = []
        for label, (breed, species) in enumerate(breeds, 1):
            for i in ids:
                _img(base / "images" / f"{breed}_{i}.jpg", label)
                lines.append(f"{breed}_{i} {label} {species} 1")
        _write(base / "annotations" / f"{split}.txt", "\n".join(lines) + "\n")
    return 6, 3, ["Abyssinian cat", "American Bulldog", "boxer dog"]


def make_flowers102(root):
    from scipy.io import savemat
    base = root / "flowers-102"
    labels = np.array([1, 2, 3] * 4)                      # image i (1-based) has labels[i - 1]
    for i, y in enumerate(labels, 1):
        _img(base / "jpg" / f"image_{i:05d}.jpg", int(y))
    savemat(base / "imagelabels.mat", {"labels": labels})
    savemat(base / "setid.mat", {"trnid": np.arange(1, 4), "valid": np.arange(4, 7),
                                 "tstid": np.arange(7, 13)})
    return 6, 6, ["pink primrose", "hard leaved pocket orchid", "canterbury bells"]


def _folders(root, names, n_train=2, n_test=1):
    for c, name in enumerate(names):
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                _img(root / split / name / f"{i}.jpg", c)


def make_dogs(root):
    _folders(root, ["n02085620-Chihuahua", "n02085936-Maltese_dog"])
    return 4, 2, ["Chihuahua", "maltese dog"]


def make_cub(root):
    _folders(root, ["001.Black_footed_Albatross", "002.Laysan_Albatross"])
    return 4, 2, ["black footed albatross", "Laysan Albatross"]


def make_imagefolder(root):
    for c, name in enumerate(["cat", "dog"]):             # one folder: split by test_fraction
        for i in range(5):
            _img(root / name / f"{i}.png", c)
    return 6, 4, ["cat", "dog"]


# the registry's datasets read from a data root (the shipped mini target has tests of its own)
MAKERS = {name: globals()[f"make_{name}"] for name in ds.DATASETS if name != ds.MINI_DATASET}


@pytest.mark.parametrize("name", list(MAKERS))
def test_every_registry_dataset_loads(name, tmp_path):
    n_train, n_test, names = MAKERS[name](tmp_path)
    train = ds.load_dataset(name, "train", root=tmp_path, size=SIZE, test_fraction=0.4, workers=2)
    test = ds.load_dataset(name, "test", root=tmp_path, size=SIZE, test_fraction=0.4, workers=2)
    for part, n in ((train, n_train), (test, n_test)):
        assert isinstance(part, ImageSet) and len(part) == n
        assert part.images.dtype == torch.uint8 and part.images.shape == (n, 3, SIZE, SIZE)
        assert part.labels.dtype == torch.int64
        assert sorted(part.labels.unique().tolist()) == list(range(len(names)))
    assert train.class_names == test.class_names
    assert train.class_names[:len(names)] == names
    assert all("_" not in c and "/" not in c for c in train.class_names)
    if name == "flowers102":                              # the official 102 names, in order
        assert len(train.class_names) == 102
    else:
        assert len(train.class_names) == len(names)


def test_images_are_centre_crops_of_the_shorter_side(tmp_path):
    px = np.zeros((16, 8, 3), dtype=np.uint8)               # 8 wide, 16 high
    px[4:12] = 255                                          # the centre square is white
    Image.fromarray(px).save(tmp_path / "a.png")
    out = decode_image(tmp_path / "a.png", 4)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out.min() > 200                                  # (bicubic blurs the cut edge a little)


@pytest.mark.parametrize("name", ["sun397", "caltech101", "imagefolder"])
def test_drawn_splits_are_saved_disjoint_and_reused(name, tmp_path):
    MAKERS[name](tmp_path)
    first = ds.load_dataset(name, "train", root=tmp_path, size=SIZE, test_fraction=0.4)
    # your own folder's splits are kept in the cache, never inside the folder
    folder = splits.user_split_dir(tmp_path) if name == "imagefolder" else tmp_path / "splits"
    assert (tmp_path / "splits").exists() == (name != "imagefolder")
    files = list(folder.glob(f"{name}_*_seed0.json"))
    assert len(files) == 1
    split = splits.load_split(files[0])
    assert not set(split["train"]) & set(split["test"])
    text = files[0].read_text()
    again = ds.load_dataset(name, "train", root=tmp_path, size=SIZE, test_fraction=0.4)
    assert files[0].read_text() == text and torch.equal(first.images, again.images)
    other = ds.load_dataset(name, "train", root=tmp_path, size=SIZE, test_fraction=0.4,
                            split_seed=1)
    assert len(other) == len(first)


def test_max_images_decodes_a_subset(tmp_path):
    make_food101(tmp_path)
    part = ds.load_dataset("food101", "train", root=tmp_path, size=SIZE, max_images=4)
    assert len(part) == 4 and len(part.class_names) == 3


def _one_line_not_found(call, *needles):
    with pytest.raises(FileNotFoundError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg and err.value.__cause__ is None
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_missing_folder_names_the_expected_layout(tmp_path):
    msg = _one_line_not_found(lambda: ds.load_dataset("aircraft", "train", root=tmp_path / "none",
                                                      size=SIZE),
                              "fgvc-aircraft-2013b", "variants.txt", "download=True")
    assert "aircraft" in msg
    _one_line_not_found(lambda: ds.load_dataset("cars", "test", root=tmp_path, size=SIZE,
                                                download=True),
                        "stanford_cars", "devkit", "cars_meta.mat", "cars_test_annos_withlabels.mat")
    _one_line_not_found(lambda: ds.load_dataset("dogs", "train", root=tmp_path, size=SIZE),
                        "train", "test")
    _one_line_not_found(lambda: ds.load_dataset("imagefolder", "train", root=tmp_path, size=SIZE),
                        "class")
    assert not (tmp_path / "caltech101").exists()          # torchvision would have made it
    _one_line_not_found(lambda: ds.load_dataset("caltech101", "train", root=tmp_path, size=SIZE),
                        "101_ObjectCategories")


def test_broken_torchvision_folder_is_one_line(tmp_path):
    make_aircraft(tmp_path)
    (tmp_path / "fgvc-aircraft-2013b" / "data" / "variants.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        ds.load_dataset("aircraft", "train", root=tmp_path, size=SIZE)
    assert err.value.__suppress_context__ and "\n" not in str(err.value)
    assert "variants.txt" in str(err.value)
    make_cars(tmp_path)
    (tmp_path / "stanford_cars" / "devkit" / "cars_train_annos.mat").unlink()
    _one_line_not_found(lambda: ds.load_dataset("cars", "train", root=tmp_path, size=SIZE),
                        "cars_train_annos.mat")


def test_unknown_name_and_split_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid: aircraft, cars, .*imagefolder"):
        ds.load_dataset("imagenet", "train", root=tmp_path, size=SIZE)
    with pytest.raises(ValueError, match="valid: train, test"):
        ds.load_dataset("dtd", "val", root=tmp_path, size=SIZE)


def test_corrupt_image_is_reported_by_name_and_skipped(tmp_path):
    make_dogs(tmp_path)
    bad = tmp_path / "train" / "n02085620-Chihuahua" / "broken_photo.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.warns(UserWarning, match="broken_photo.jpg"):
        train = ds.load_dataset("dogs", "train", root=tmp_path, size=SIZE)
    assert len(train) == 4
    table = check_image_folder(tmp_path).table()  # the one checker's report, as a table
    assert list(table.columns) == ["split", "class", "class_name", "images", "broken_files",
                                   "odd_files"]
    row = table[(table["split"] == "train") & (table["class"] == "n02085620-Chihuahua")].iloc[0]
    assert row["images"] == 2 and row["broken_files"] == ["broken_photo.jpg"]
    assert row["class_name"] == "Chihuahua"  # the name prompts use: the WordNet id dropped
    assert table["images"].sum() == 6


def test_kshot_indices_are_deterministic_and_match_kshot_subset():
    labels = np.repeat(np.arange(4), 6)
    a, b = splits.kshot_indices(labels, 2, seed=3), splits.kshot_indices(labels, 2, seed=3)
    assert a == b and len(a) == 8 and np.bincount(labels[a]).tolist() == [2, 2, 2, 2]
    assert splits.kshot_indices(labels, 2, seed=4) != a
    pool = ImageSet(torch.arange(24, dtype=torch.uint8).view(24, 1, 1, 1).expand(24, 3, 1, 1),
                    torch.as_tensor(labels), list("abcd"))
    assert torch.equal(kshot_subset(pool, 2, seed=3).images, pool.subset(a).images)
    assert splits.kshot_indices(labels, "full", 0) == list(range(24))
    with pytest.raises(ValueError, match="shots=7"):
        splits.kshot_indices(labels, 7, 0)


def test_kshot_split_files_are_saved_and_loaded_identically(tmp_path):
    make_imagefolder(tmp_path / "mine")
    first = ds.load_dataset("imagefolder", "train", 2, 5, root=tmp_path / "mine", size=SIZE)
    path = splits.split_file("imagefolder", tmp_path / "mine", "2shot_seed5")
    assert path.parent == splits.user_split_dir(tmp_path / "mine") and path.exists()
    assert not (tmp_path / "mine" / "splits").exists()  # never written into your folder
    saved = splits.load_split(path)
    assert saved["seed"] == 5 and len(saved["indices"]) == 4
    again = ds.load_dataset("imagefolder", "train", 2, 5, root=tmp_path / "mine", size=SIZE)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    splits.save_split(tmp_path / "copy.json", saved)
    assert splits.load_split(tmp_path / "copy.json") == saved
    other = ImageSet(first.images, first.labels, first.class_names)
    with pytest.raises(ValueError, match="another training set"):
        splits.kshot_split(other, 2, 5, path)


def test_image_listed_but_missing_is_skipped_by_name(tmp_path):
    make_food101(tmp_path)
    (tmp_path / "food-101" / "images" / "beignets" / "1.jpg").unlink()
    with pytest.warns(UserWarning, match="beignets/1.jpg"):
        train = ds.load_dataset("food101", "train", root=tmp_path, size=SIZE)
    assert len(train) == 8


def test_generation_hours_covers_the_registry_and_scales_with_volume():
    from bridgelib.datasets import CLASS_COUNTS, DATASETS, generation_hours
    # every dataset of the paper profile; the mini target generates on a CPU, not with SD v1.5
    assert set(CLASS_COUNTS) == set(DATASETS) - {"imagefolder", "fashion-mnist"}
    one, two = generation_hours(2.0, per_class=1000), generation_hours(2.0, per_class=2000)
    assert (two["gpu_hours"] >= 2 * one["gpu_hours"] - 0.1).all()
    pets = one.set_index("dataset").loc["pets"]
    assert pets["images"] == 37_000 and abs(pets["gpu_hours"] - 37_000 / 2 / 3600) < 0.1
    with pytest.raises(ValueError, match="images_per_s=0"):
        generation_hours(0)


@pytest.mark.parametrize("name, arg, value, valid", [
    ("imagefolder", "size", 0, "a positive integer up to 4,096"),
    ("imagefolder", "test_fraction", 1.0, "a positive number below 1"),
    ("fashion-mnist", "max_images", -1, "none or a positive integer")])  # -1 once dropped one image
def test_a_bad_size_fraction_or_count_is_refused_in_one_line(tmp_path, name, arg, value, valid):
    with pytest.raises(ValueError) as err:
        ds.load_dataset(name, "test", **{"root": tmp_path, "size": SIZE, arg: value})
    assert str(err.value) == f"{arg}={value!r} is invalid; expected {valid}"


def test_the_config_download_knob_reaches_torchvision(tmp_path, monkeypatch):
    """`--download` (config field `download`) is what lets torchvision fetch a missing dataset;
    without it the one-line error says what would be fetched, how big, and how to point at a copy."""
    import torchvision.datasets as tvd
    from bridgelib.config import get_config
    asked = {}

    class Fetching:  # stands in for torchvision's class: records the request, fetches nothing
        def __init__(self, root, download=False, **kwargs):
            asked.update(download=download)
            raise RuntimeError("offline")
    monkeypatch.setattr(tvd, "OxfordIIITPet", Fetching)
    base = dict(dataset="pets", data_root=str(tmp_path / "pets"))
    msg = _one_line_not_found(lambda: ds.load_dataset(get_config("paper", **base), "test"),
                              "--download", "0.8 GB", "data_root")
    assert "oxford-iiit-pet" in msg and asked == {}  # refused before torchvision was asked
    with pytest.raises(Exception, match="offline"):
        ds.load_dataset(get_config("paper", **base, download=True), "test")
    assert asked == {"download": True}
