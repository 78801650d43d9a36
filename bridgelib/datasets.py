"""The paper profile's real target datasets: one registry, one decoder, fixed splits on disk.

`load_dataset(name, split, root, size)` returns an `ImageSet` decoded once (PIL; shorter side
resized to `size`, centre crop `size` x `size`, RGB uint8) with cleaned class names. Where a
torchvision class knows the layout we let it parse the annotation files, then read its (file,
label) list and decode the files ourselves: once, in threads, and with unreadable files reported by
name and skipped, instead of a crash deep inside a DataLoader in epoch 3.

| name | read by | train / test |
|---|---|---|
| aircraft | torchvision FGVCAircraft, variant level | trainval / test |
| cars | torchvision StanfordCars (a manual folder: its download link is dead) | train / test |
| food101 | torchvision Food101 | train / test |
| pets | torchvision OxfordIIITPet | trainval / test |
| dtd | torchvision DTD, partition 1 | train + val / test |
| sun397 | torchvision SUN397 + our split file | seeded 50/50 per class |
| caltech101 | torchvision Caltech101 (category) + our split file | seeded 30 per class / rest |
| flowers102 | our reader of torchvision's layout (see `_read_flowers`) | train + val / test |
| dogs, cub, imagefolder | our ImageFolder reader | train/ and test/ folders |

Splits that the data do not fix (SUN397, Caltech-101, a single-folder ImageFolder) and k-shot
subsets are drawn once with a seed and saved as JSON in `<root>/splits/` (or `split_dir`), so every
run, machine and notebook sees the same images. Delete a file to draw again. Your own folder
(`imagefolder`) is never written into: its splits live in the project's cache,
`$BRIDGELIB_CACHE/splits/<folder>-<hash of its path>/` (default `cache/` of the repository), so a
read-only dataset works; a split file already in `<root>/splits/` is still read from there.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import warnings
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bridgelib.data import (IMAGE_SUFFIXES, ImageSet, ImageTooLarge, check_memory, class_folders,
                            parse_shots, read_rgb)
from bridgelib.files import progress, write_json
from bridgelib.prompts import clean_class_names

SPLITS = ("train", "test")
Pairs = list[tuple[Path, int]]                      # (image file, label)
_FOLDER_PREFIX = re.compile(r"^(n\d{8}-|\d{3}\.)")  # Stanford Dogs' WordNet ids, CUB's numbering


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    reader: Callable[["_Ctx"], tuple[Pairs, list[str]]]   # -> pairs of the split, raw class names
    layout: str                  # what must be where under root; shown in every layout error
    required: tuple[str, ...]    # paths under root checked before torchvision is asked
    fetches: str | None          # what download=True fetches; None: cannot be downloaded
    prompt_key: str | None = None  # key of prompts.DISAMBIGUATION when it differs from the name


# What a reader needs: spec, root, split, download, seed (of drawn splits), test_fraction, split_dir
_Ctx = namedtuple("_Ctx", "spec root split download seed test_fraction split_dir")


# ---------------------------------------------------------------- readers of each layout
def _guarded(c: _Ctx, fn: Callable, *args, **kwargs):
    """Call torchvision (or scipy) and turn its deep errors about a broken folder into one line."""
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, OSError, KeyError, ValueError, IndexError, TypeError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FileNotFoundError(f"{c.spec.name}: cannot read {c.root} ({why}); "
                                f"expected {c.spec.layout}") from None


def _torchvision(c: _Ctx, cls: str, **kwargs):
    import torchvision.datasets as tvd
    download = c.download and c.spec.fetches is not None   # StanfordCars' download only raises
    return _guarded(c, getattr(tvd, cls), str(c.root), download=download, **kwargs)


def _pairs(ds) -> Pairs:
    """(file, label) pairs from a torchvision dataset's attributes (names of torchvision 0.13-0.29):
    we decode each file once ourselves rather than through its __getitem__."""
    if hasattr(ds, "_samples"):                       # StanfordCars
        pairs = ds._samples
    elif hasattr(ds, "_images"):                      # OxfordIIITPet
        pairs = zip(ds._images, ds._labels)
    elif hasattr(ds, "_image_files"):                 # the others
        pairs = zip(ds._image_files, ds._labels)
    else:
        raise RuntimeError(f"torchvision's {type(ds).__name__} no longer has the attributes "
                           "bridgelib reads (_image_files, _labels); use torchvision 0.29")
    return [(Path(f), int(y)) for f, y in pairs]


def _tv_reader(cls: str, train_split: str = "train", **kwargs):
    """A reader for a torchvision class whose own split names give our train/test directly."""
    def read(c: _Ctx):
        ds = _torchvision(c, cls, split=train_split if c.split == "train" else "test", **kwargs)
        return _pairs(ds), list(ds.classes)
    return read


def _read_dtd(c: _Ctx):
    parts = [_torchvision(c, "DTD", split=s, partition=1)
             for s in (("train", "val") if c.split == "train" else ("test",))]
    names = sorted({n for p in parts for n in p.classes})   # train and val: one label order
    return [(f, names.index(p.classes[y])) for p in parts for f, y in _pairs(p)], names


def _read_sun397(c: _Ctx):
    """SUN397's official partitions (50 + 50 images per class, in a separate Partitions.zip) are
    not read by torchvision: we draw a seeded 50/50 split of each class (odd: train gets one more)."""
    ds = _torchvision(c, "SUN397")
    pairs = sorted(_pairs(ds))                        # rglob order differs between machines
    names = [n.replace("_", " ").replace("/", " (") + ")" * n.count("/") for n in ds.classes]
    return _fixed_split(c, pairs, "half", lambda n: (n + 1) // 2), names


def _read_caltech(c: _Ctx):
    """Caltech-101 has no official split: 30 random training images per class, the rest test
    (a class of 30 or fewer, never seen in the real data, keeps half for test)."""
    ds = _torchvision(c, "Caltech101", target_type="category")
    base = Path(ds.root) / "101_ObjectCategories"
    pairs = [(base / ds.categories[y] / f"image_{i:04d}.jpg", int(y)) for i, y in zip(ds.index, ds.y)]
    return _fixed_split(c, pairs, "30-per-class", lambda n: 30 if n > 30 else n // 2), ds.categories


def _read_flowers(c: _Ctx):
    """Our reader of torchvision's Flowers102 layout, because torchvision md5-checks the two .mat
    files and so refuses the fake copies our tests write. Same result: train = trnid + valid,
    test = tstid, 1-based labels from imagelabels.mat, torchvision's 102 names. torchvision
    still does the download (and its md5 check) when download=True."""
    from scipy.io import loadmat
    from torchvision.datasets import Flowers102
    if c.download:
        _torchvision(c, "Flowers102")
    base = c.root / "flowers-102"
    ids = _guarded(c, loadmat, base / "setid.mat", squeeze_me=True)
    labels = np.atleast_1d(_guarded(c, loadmat, base / "imagelabels.mat", squeeze_me=True)["labels"])
    keys = ("trnid", "valid") if c.split == "train" else ("tstid",)
    chosen = [int(i) for k in keys for i in np.atleast_1d(ids[k])]
    return ([(base / "jpg" / f"image_{i:05d}.jpg", int(labels[i - 1]) - 1) for i in chosen],
            list(Flowers102.classes))


def _image_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_classes(c: _Ctx, bases: list[Path]) -> None:
    """A folder dataset every run can learn from: at least 2 classes, no class folder without
    an image file, no class with test images but none to train on (once: a single class gave
    test_acc 1.0, an empty or test-only class was a label no image taught)."""
    layout = f"expected {c.spec.layout}"
    names = sorted({f.name for b in bases for f in class_folders(b)})
    if len(names) < 2:
        raise ValueError(f"{c.spec.name}: {c.root} has {len(names)} class folder(s) "
                         f"({', '.join(names) or 'none'}); a classifier needs at least 2 "
                         f"classes; {layout}")
    for base in bases:
        for folder in class_folders(base):
            if not _image_files(folder):
                raise ValueError(f"{c.spec.name}: class folder {folder} holds no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)}); add images or remove it")
    if len(bases) == 2:
        trained = {f.name for f in class_folders(bases[0])}
        only = [n for n in names if n not in trained]
        if only:
            raise ValueError(f"{c.spec.name}: class {only[0]!r} has test images "
                             f"({bases[1] / only[0]}) but no training images in {bases[0]}; "
                             f"every class needs both")


def _read_folders(c: _Ctx):
    """root/train/<class>/* and root/test/<class>/*; the label order is the sorted union of both."""
    for s in SPLITS:
        if not (c.root / s).is_dir():
            raise FileNotFoundError(f"{c.spec.name}: {c.root / s} not found; expected {c.spec.layout}")
    _check_classes(c, [c.root / s for s in SPLITS])
    folders = sorted({f.name for s in SPLITS for f in class_folders(c.root / s)})
    pairs = [(p, folders.index(f.name)) for f in class_folders(c.root / c.split)
             for p in _image_files(f)]
    return pairs, [_FOLDER_PREFIX.sub("", f) for f in folders]


def _read_imagefolder(c: _Ctx):
    """Your own data: train/ and test/ folders, or one folder of class folders split per class
    with a seeded `test_fraction` (at least one image of a class stays in train)."""
    if (c.root / "train").is_dir() or (c.root / "test").is_dir():
        return _read_folders(c)
    folders = class_folders(c.root)
    if not folders:
        raise FileNotFoundError(f"imagefolder: no class folders in {c.root}; expected {c.spec.layout}")
    _check_classes(c, [c.root])
    pairs = [(p, y) for y, f in enumerate(folders) for p in _image_files(f)]
    frac = c.test_fraction
    keep = _fixed_split(c, pairs, f"test{frac:g}", lambda n: n - min(max(round(n * frac), 1), n - 1))
    return keep, [_FOLDER_PREFIX.sub("", f.name) for f in folders]


_FOLDERS = "<root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg"
_OX = "robots.ox.ac.uk"
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("aircraft", _tv_reader("FGVCAircraft", "trainval", annotation_level="variant"),
                "<root>/fgvc-aircraft-2013b/data/ with images/*.jpg, variants.txt, "
                "images_variant_trainval.txt, images_variant_test.txt",
                ("fgvc-aircraft-2013b/data",), f"fgvc-aircraft-2013b.tar.gz (2.6 GB, {_OX})"),
    DatasetSpec("cars", _tv_reader("StanfordCars"),
                "<root>/stanford_cars/ with cars_train/*.jpg, cars_test/*.jpg, "
                "cars_test_annos_withlabels.mat, and devkit/ holding cars_meta.mat and "
                "cars_train_annos.mat (no download: the official link is dead; copy them from a "
                "mirror)", ("stanford_cars/devkit",), None),
    DatasetSpec("food101", _tv_reader("Food101"),
                "<root>/food-101/ with images/<class>/*.jpg, meta/train.json, meta/test.json",
                ("food-101/meta", "food-101/images"), "food-101.tar.gz (5 GB, ethz.ch)"),
    DatasetSpec("dtd", _read_dtd,
                "<root>/dtd/dtd/ with images/<class>/*.jpg and labels/train1.txt, val1.txt, test1.txt",
                ("dtd/dtd",), f"dtd-r1.0.1.tar.gz (0.6 GB, {_OX})"),
    DatasetSpec("sun397", _read_sun397,
                "<root>/SUN397/ with ClassName.txt and <letter>/<class>/sun_*.jpg",
                ("SUN397",), "SUN397.tar.gz (tens of GB, vision.princeton.edu)"),
    DatasetSpec("caltech101", _read_caltech,
                "<root>/caltech101/101_ObjectCategories/<class>/image_0001.jpg... "
                "(BACKGROUND_Google included; it is not a class)",
                ("caltech101/101_ObjectCategories",), "caltech-101.zip (0.1 GB, data.caltech.edu)"),
    DatasetSpec("pets", _tv_reader("OxfordIIITPet", "trainval"),
                "<root>/oxford-iiit-pet/ with images/*.jpg and annotations/trainval.txt, "
                "annotations/test.txt", ("oxford-iiit-pet/images", "oxford-iiit-pet/annotations"),
                f"images.tar.gz + annotations.tar.gz (0.8 GB, {_OX})"),
    DatasetSpec("flowers102", _read_flowers,
                "<root>/flowers-102/ with jpg/image_00001.jpg..., imagelabels.mat, setid.mat",
                ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
                f"102flowers.tgz + imagelabels.mat + setid.mat (0.3 GB, {_OX})", "flowers"),
    DatasetSpec("dogs", _read_folders, f"{_FOLDERS} (Stanford Dogs' Images/<breed>/ sorted by "
                "train_list.mat / test_list.mat; 'n02085620-' prefixes are dropped)", (), None),
    DatasetSpec("cub", _read_folders, f"{_FOLDERS} (CUB_200_2011/images/<species>/ sorted by "
                "train_test_split.txt; '001.' prefixes are dropped)", (), None),
    DatasetSpec("imagefolder", _read_imagefolder, f"{_FOLDERS}, or <root>/<class>/*.jpg "
                "(split per class with a seeded test fraction)", (), None),
)}


# ---------------------------------------------------------------- loading and decoding
def load_dataset(name: str, split: str, root: str | Path, size: int, download: bool = False, *,
                 max_images: int | None = None, split_seed: int = 0, test_fraction: float = 0.2,
                 split_dir: str | Path | None = None, workers: int = 8) -> ImageSet:
    """One split ('train' or 'test') of a registry dataset, decoded once at `size` x `size`.

    download=True lets torchvision fetch the dataset into `root` when it is missing (each
    DATASETS[name].fetches says what; 'cars', 'dogs', 'cub', 'imagefolder' cannot be fetched).
    `max_images` decodes a seeded random subset, for tests and quick looks. `split_seed` fixes
    the drawn splits (sun397, caltech101, single-folder imagefolder); it is not the run seed, so
    every run shares one split. Unreadable images are skipped with a warning naming them.
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size={size!r} is invalid; expected a positive integer")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} is invalid; expected 0 < x < 1")
    root = Path(root).expanduser()
    missing = [r for r in spec.required if not (root / r).exists()]
    if missing and not (download and spec.fetches):
        hint = "; pass download=True to fetch it" if spec.fetches else ""
        raise FileNotFoundError(f"{name}: {root / missing[0]} not found; expected {spec.layout}{hint}")
    if missing:
        print(f"{name}: downloading {spec.fetches} into {root}", file=sys.stderr)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: {root} not found; expected {spec.layout}")
    ctx = _Ctx(spec, root, split, download, split_seed, test_fraction,
               Path(split_dir) if split_dir else None)
    pairs, raw_names = spec.reader(ctx)
    if max_images is not None and max_images < len(pairs):
        pick = np.sort(np.random.default_rng(0).permutation(len(pairs))[:max_images])
        pairs = [pairs[i] for i in pick]
    images, labels = decode_images(pairs, size, workers=workers, desc=f"{name} {split}")
    if not len(labels):
        raise FileNotFoundError(f"{name}: no readable images for split {split!r} in {root}; "
                                f"expected {spec.layout}")
    names = clean_class_names([n.replace("/", " ") for n in raw_names],
                              dataset=spec.prompt_key or name)
    return ImageSet(images, labels, names)


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: shorter side resized to `size` (bicubic), centre crop, RGB.
    Decoded by `data.read_rgb` (JPEG at a reduced scale, 16-bit and alpha converted, a pixel cap)."""
    from PIL import Image, ImageOps
    return np.asarray(ImageOps.fit(read_rgb(path, size), (size, size), Image.BICUBIC))


def _try_decode(path: Path, size: int) -> np.ndarray | None:
    from PIL import Image
    try:
        return decode_image(path, size)
    except ImageTooLarge:
        raise  # refused with its one line, not skipped as unreadable
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def decode_images(pairs: Pairs, size: int, workers: int = 8,
                  desc: str = "decoding") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode (file, label) pairs in threads (PIL releases the GIL) into (N, 3, size, size)
    uint8 and (N,) int64, filled in place; unreadable files are skipped with one warning."""
    check_memory(len(pairs), size, desc)  # before the one tensor they all go into
    out = torch.empty((len(pairs), 3, size, size), dtype=torch.uint8)
    ok = np.ones(len(pairs), dtype=bool)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        arrays = pool.map(lambda p: _try_decode(p[0], size), pairs)
        for i, arr in enumerate(progress(arrays, total=len(pairs), desc=desc)):
            if arr is None:
                ok[i] = False
            else:
                out[i] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    labels = torch.tensor([y for _, y in pairs], dtype=torch.int64)
    if not ok.all():
        bad = [str(pairs[i][0]) for i in np.flatnonzero(~ok)]
        warnings.warn(f"{desc}: skipped {len(bad)} unreadable image(s): {', '.join(bad)}",
                      stacklevel=2)
        keep = torch.from_numpy(ok)
        return out[keep], labels[keep]
    return out, labels


def check_image_folder(root: str | Path):
    """A pandas table of an ImageFolder (train/ + test/, or class folders): one row per split and
    class with its readable image count and the names of the files that do not decode.
    The table view of `bridgelib.data.check_image_folder`'s report (which also lists odd sizes
    and refuses folders no run could use), with the class names prompts will use."""
    from bridgelib.data import check_image_folder as check
    table = check(root, min_per_class=0, min_side=0).table()
    names = clean_class_names([_FOLDER_PREFIX.sub("", c) for c in table["class"]])
    table.insert(2, "class_name", names)
    return table[["split", "class", "class_name", "images", "broken_files"]]


# ---------------------------------------------------------------- split files
def split_file(name: str, root: str | Path, what: str, split_dir: str | Path | None = None) -> Path:
    """Where a split lives: `<root>/splits/<name>_<what>.json` unless `split_dir` is given; for
    your own folder (imagefolder) in the cache (module docstring), never inside the folder,
    unless an older run left the file there."""
    file = f"{name}_{what}.json"
    if split_dir:
        return Path(split_dir) / file
    root = Path(root).expanduser()
    if name != "imagefolder" or (root / "splits" / file).exists():
        return root / "splits" / file
    return user_split_dir(root) / file


def user_split_dir(root: str | Path) -> Path:
    """The cache folder of the split files of your own folder `root` (one per resolved path)."""
    from bridgelib.config import REPO_ROOT
    root = Path(root).expanduser().resolve()
    cache = Path(os.environ.get("BRIDGELIB_CACHE") or REPO_ROOT / "cache").expanduser()
    return cache / "splits" / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def save_split(path: str | Path, split: dict) -> Path:
    """Write a split (JSON, atomically) so later runs read it instead of drawing again."""
    return write_json(path, split)


def load_split(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"split file {path} is not valid JSON ({e}); "
                         "delete it to draw again") from None


def _fixed_split(c: _Ctx, pairs: Pairs, rule: str, n_train: Callable[[int], int]) -> Pairs:
    """The pairs of `c.split` under a per-class seeded split stored by relative file name."""
    path = split_file(c.spec.name, c.root, f"{rule}_seed{c.seed}", c.split_dir)
    rel = [p.relative_to(c.root).as_posix() for p, _ in pairs]
    if path.exists():
        split = load_split(path)
    else:
        rng, labels, train = np.random.default_rng(c.seed), np.array([y for _, y in pairs]), set()
        for y in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == y))
            train.update(int(i) for i in idx[:n_train(len(idx))])
        split = {"dataset": c.spec.name, "rule": rule, "seed": c.seed,
                 "train": sorted(rel[i] for i in train),
                 "test": sorted(r for i, r in enumerate(rel) if i not in train)}
        save_split(path, split)
    if set(split["train"]) | set(split["test"]) != set(rel):
        raise ValueError(f"split file {path} lists other files than {c.root} holds; delete it "
                         "to draw a new split (old results then no longer compare)")
    keep = set(split[c.split])
    return [pr for pr, r in zip(pairs, rel) if r in keep]


def kshot_indices(labels, shots: int | str | None, seed: int = 0) -> list[int]:
    """Sorted indices of `shots` images per class (all for 'full'). The same draw as
    `data.kshot_subset` when every class is present: one seeded generator, classes in order."""
    labels = np.asarray(labels)
    k = parse_shots(shots)
    if k is None:
        return list(range(len(labels)))
    rng, idx = np.random.default_rng(seed), []
    for y in np.unique(labels):
        members = np.flatnonzero(labels == y)
        if k > len(members):
            raise ValueError(f"shots={k} is invalid; class {int(y)} has {len(members)} images")
        idx.extend(int(i) for i in rng.choice(members, k, replace=False))
    return sorted(idx)


def kshot_split(train: ImageSet, shots: int | str | None, seed: int, path: str | Path) -> ImageSet:
    """The k-shot subset of `train` recorded in `path`: drawn with `seed` and saved on first use,
    read back afterwards; refused if `train` is not the set it was drawn from."""
    path, labels = Path(path), train.labels.numpy().astype("<i8")
    fingerprint = {"images": len(labels),
                   "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest()}
    if path.exists():
        split = load_split(path)
        if split.get("fingerprint") != fingerprint:
            raise ValueError(f"split file {path} was drawn from another training set (not these "
                             f"{len(labels)} images and labels); delete it or pass another path")
    else:
        split = {"shots": shots, "seed": seed, "fingerprint": fingerprint,
                 "indices": kshot_indices(labels, shots, seed)}
        save_split(path, split)
    return train.subset(split["indices"])


def load_kshot(name: str, root: str | Path, size: int, shots: int | str | None, seed: int = 0,
               split_dir: str | Path | None = None, **kwargs) -> ImageSet:
    """The fixed k-shot training set of a dataset: `<root>/splits/<name>_<k>shot_seed<s>.json`."""
    train = load_dataset(name, "train", root, size, split_dir=split_dir, **kwargs)
    path = split_file(name, root, f"{shots}shot_seed{seed}", split_dir)
    return kshot_split(train, shots, seed, path)


# ---------------------------------------------------------------- GPU cost of generation
CLASS_COUNTS = {"aircraft": 100, "cars": 196, "food101": 101, "dtd": 47, "sun397": 397,
                "caltech101": 101, "pets": 37, "flowers102": 102, "dogs": 120, "cub": 200}
# An ESTIMATE, not a measurement (no GPU was lent when it was written): SD v1.5, 512 px, fp16,
# SDPA, 25 DPM-Solver++ steps with guidance. Basis: ~31 it/s for one 512 px image with guidance
# on an A100 80GB with diffusers + torch 2.1 SDPA (fal-ai/stable-diffusion-benchmarks), i.e.
# ~1.2 images/s at 25 steps, and ~1.5 images/s with batch 16; H100 taken as ~2x an A100.
ESTIMATED_IMAGES_PER_S = {"A100": 1.5, "H100": 3.0}  # notebook 07 and README's cost table


def generation_hours(images_per_s: float, per_class: int = 1000):
    """GPU hours to generate `per_class` images for every registry dataset at `images_per_s`
    (measure yours with benchmarks/bench_generate.py --profile paper), as a pandas table."""
    import pandas as pd
    if not images_per_s > 0:
        raise ValueError(f"images_per_s={images_per_s!r} is invalid; expected a positive number")
    rows = [{"dataset": name, "classes": n, "images": n * per_class,
             "gpu_hours": round(n * per_class / images_per_s / 3600, 1)}
            for name, n in CLASS_COUNTS.items()]
    return pd.DataFrame(rows)
