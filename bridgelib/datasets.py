"""Real target data: the dataset registry and the one door to it, `load_dataset`.

`load_dataset(cfg, split, shots, seed)` returns one split ('train' or 'test') of a registry
dataset as an `ImageSet`, the k-shot subset of 'train' when `shots` is given
(`bridgelib.splits`). Every stage, command and notebook reads real data through it.

The mini target, Fashion-MNIST, is the registry's `fashion-mnist` entry: its training pool and
test set ship in `data/fashion-mnist/` as arrays (`mini.fashion.load_mini_part`), already 32 px,
so it needs no data root and ignores `size`. Every other entry is read from a data root and
decoded once (`data.decode_images`: shorter side resized to `size`, centre crop, RGB uint8)
with cleaned class names. Where a torchvision class knows the layout we let it parse the
annotation files, then read its (file, label) list and decode the files ourselves: once, in
threads, and with unreadable files reported by name and skipped, instead of a crash deep inside
a DataLoader in epoch 3.

| name | read by | train / test |
|---|---|---|
| fashion-mnist | shipped arrays (`mini.fashion`) | the 1,000-image pool / the 10,000 test images |
| aircraft | torchvision FGVCAircraft, variant level | trainval / test |
| cars | torchvision StanfordCars (a manual folder: its download link is dead) | train / test |
| food101 | torchvision Food101 | train / test |
| pets | torchvision OxfordIIITPet | trainval / test |
| dtd | torchvision DTD, partition 1 | train + val / test |
| sun397 | torchvision SUN397 + our split file | seeded 50/50 per class |
| caltech101 | torchvision Caltech101 (category) + our split file | seeded 30 per class / rest |
| flowers102 | our reader of torchvision's layout (see `_read_flowers`) | train + val / test |
| dogs, cub, imagefolder | our ImageFolder reader (`folders.class_files`) | train/ and test/ folders |

Splits that the data do not fix (SUN397, Caltech-101, a single-folder ImageFolder) and k-shot
subsets are drawn once with a seed and saved (`bridgelib.splits` says where).

Taught in notebooks 01, 02, 03, 04, 07.
"""
from __future__ import annotations

import sys
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bridgelib.config import Config, check_value
from bridgelib.data import ImageSet, Pairs, StreamSet, decode_images, stream_pairs, streams
from bridgelib.folders import FOLDER_PREFIX, IMAGE_SUFFIXES, ClassFolder, class_files
from bridgelib.mini import fashion
from bridgelib.prompts import clean_class_names
from bridgelib.splits import fixed_split, kshot_split, kshot_subset, parse_shots, split_file
from bridgelib.validation import integer, number, optional

# Heavy third-party modules (scipy, torchvision) are imported inside the functions that use them,
# so that `import bridgelib` and `bridge --help` do not load them.

SPLITS = ("train", "test")
MINI_DATASET = fashion.DATASET
MINI_CLASSES = fashion.CLASSES
_MINI_PARTS = {"train": "pool", "test": "test"}  # the registry's splits of the shipped parts


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    reader: Callable[["_Ctx"], tuple[Pairs, list[str]]] | None  # -> pairs of the split, raw names
    layout: str                  # what must be where under root; shown in every layout error
    required: tuple[str, ...]    # paths under root checked before torchvision is asked
    fetches: str | None          # what download=True fetches; None: cannot be downloaded
    prompt_key: str | None = None  # key of prompts.DISAMBIGUATION when it differs from the name
    shipped: Callable[[str], ImageSet] | None = None  # split -> ImageSet: shipped, no data root


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
    import torchvision.datasets as tvd  # here: seconds to import, and only these readers need it
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
    return _split(c, pairs, "half", lambda n: (n + 1) // 2), names


def _read_caltech(c: _Ctx):
    """Caltech-101 has no official split: 30 random training images per class, the rest test
    (a class of 30 or fewer, never seen in the real data, keeps half for test)."""
    ds = _torchvision(c, "Caltech101", target_type="category")
    base = Path(ds.root) / "101_ObjectCategories"
    pairs = [(base / ds.categories[y] / f"image_{i:04d}.jpg", int(y)) for i, y in zip(ds.index, ds.y)]
    return _split(c, pairs, "30-per-class", lambda n: 30 if n > 30 else n // 2), ds.categories


def _read_flowers(c: _Ctx):
    """Our reader of torchvision's Flowers102 layout, because torchvision md5-checks the two .mat
    files and so refuses the fake copies our tests write. Same result: train = trnid + valid,
    test = tstid, 1-based labels from imagelabels.mat, torchvision's 102 names. torchvision
    still does the download (and its md5 check) when download=True."""
    from scipy.io import loadmat  # here, as torchvision: only this reader needs them
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


def _split(c: _Ctx, pairs: Pairs, rule: str, n_train: Callable[[int], int]) -> Pairs:
    """The pairs of `c.split` under a seeded per-class split saved on first use."""
    return fixed_split(c.spec.name, c.root, pairs, c.split, rule, c.seed, n_train, c.split_dir)


def _check_classes(c: _Ctx, listing: dict[Path, list[ClassFolder]]) -> None:
    """A folder dataset every run can learn from: at least 2 classes, no class folder without
    an image file, no class with test images but none to train on (once: a single class gave
    test_acc 1.0, an empty or test-only class was a label no image taught)."""
    layout = f"expected {c.spec.layout}"
    names = sorted({f.path.name for found in listing.values() for f in found})
    if len(names) < 2:
        raise ValueError(f"{c.spec.name}: {c.root} has {len(names)} class folder(s) "
                         f"({', '.join(names) or 'none'}); a classifier needs at least 2 "
                         f"classes; {layout}")
    for found in listing.values():
        for folder in found:
            if not folder.images:
                raise ValueError(f"{c.spec.name}: class folder {folder.path} holds no image "
                                 f"files ({', '.join(IMAGE_SUFFIXES)}); add images or remove it")
    if len(listing) == 2:
        (train_dir, train), (test_dir, _) = listing.items()
        trained = {f.path.name for f in train}
        only = [n for n in names if n not in trained]
        if only:
            raise ValueError(f"{c.spec.name}: class {only[0]!r} has test images "
                             f"({test_dir / only[0]}) but no training images in {train_dir}; "
                             f"every class needs both")


def _read_folders(c: _Ctx):
    """root/train/<class>/* and root/test/<class>/*; the label order is the sorted union of both."""
    for s in SPLITS:
        if not (c.root / s).is_dir():
            raise FileNotFoundError(f"{c.spec.name}: {c.root / s} not found; expected {c.spec.layout}")
    listing = {c.root / s: class_files(c.root / s) for s in SPLITS}
    _check_classes(c, listing)
    folders = sorted({f.path.name for found in listing.values() for f in found})
    pairs = [(p, folders.index(f.path.name)) for f in listing[c.root / c.split] for p in f.images]
    return pairs, [FOLDER_PREFIX.sub("", f) for f in folders]


def _read_imagefolder(c: _Ctx):
    """Your own data: train/ and test/ folders, or one folder of class folders split per class
    with a seeded `test_fraction` (at least one image of a class stays in train)."""
    if (c.root / "train").is_dir() or (c.root / "test").is_dir():
        return _read_folders(c)
    found = class_files(c.root)
    if not found:
        raise FileNotFoundError(f"imagefolder: no class folders in {c.root}; expected {c.spec.layout}")
    _check_classes(c, {c.root: found})
    pairs = [(p, y) for y, f in enumerate(found) for p in f.images]
    frac = c.test_fraction
    keep = _split(c, pairs, f"test{frac:g}", lambda n: n - min(max(round(n * frac), 1), n - 1))
    return keep, [FOLDER_PREFIX.sub("", f.path.name) for f in found]


_FOLDERS = "<root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg"
_OX = "robots.ox.ac.uk"
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec(MINI_DATASET, None, "shipped in data/fashion-mnist/ (pool.npz, test.npz)", (), None,
                shipped=lambda split: fashion.load_mini_part(_MINI_PARTS[split])),
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


# ---------------------------------------------------------------- the one door
def load_dataset(cfg: Config | str, split: str, shots: int | str | None = None, seed: int = 0, *,
                 size: int | None = None, root: str | Path | None = None, download: bool = False,
                 max_images: int | None = None, split_seed: int = 0, test_fraction: float = 0.2,
                 split_dir: str | Path | None = None, workers: int = 8) -> ImageSet:
    """Real data: `split` ('train' or 'test') of a registry dataset, decoded once.

    `cfg` is a Config (its dataset, data_root and image_size; `root` and `size` override them)
    or a registry name, then with `root` and `size` for every dataset but the shipped mini
    target. 'train' with `shots` is the k-shot subset drawn with `seed`, the run's seed
    (`splits.kshot_indices`); read from disk, it is saved on first use as
    `<root>/splits/<name>_<shots>shot_seed<seed>.json` and read back afterwards. 'test' is the
    whole test split, whatever `shots`.
    download=True lets torchvision fetch the dataset into `root` when it is missing (each
    DATASETS[name].fetches says what; 'cars', 'dogs', 'cub', 'imagefolder' cannot be fetched).
    `max_images` decodes a seeded random subset, for tests and quick looks. `split_seed` fixes
    the drawn splits (sun397, caltech101, single-folder imagefolder); it is not the run seed, so
    every run shares one split. Unreadable images are skipped with a warning naming them.
    """
    name = cfg
    if not isinstance(cfg, str):
        name, root, size = cfg.dataset, root or cfg.data_root or None, size or cfg.image_size
        download = download or cfg.download
    spec = DATASETS.get(name)
    if spec is None:
        on_disk = ", ".join(n for n in DATASETS if n != MINI_DATASET)
        raise ValueError(f"unknown dataset {name!r}; valid: {on_disk} (read from a data root) "
                         f"or {MINI_DATASET} (shipped in data/)")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    k = parse_shots(shots) if split == "train" else None
    if spec.shipped is not None:  # the pool ships fixed: the draw is made again, nothing written
        images = spec.shipped(split)
        pick = _first_of(len(images), max_images)
        return kshot_subset(images if pick is None else images.subset(pick), k, seed)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a data root (config data_root or $BRIDGELIB_DATA)")
    images = _decode_split(spec, split, Path(root).expanduser(), size, download, max_images,
                           split_seed, test_fraction, split_dir, workers)
    if k is None:
        return images
    return kshot_split(images, shots, seed, split_file(name, root, f"{shots}shot_seed{seed}",
                                                        split_dir))


def _first_of(n: int, max_images: int | None) -> np.ndarray | None:
    """`max_images` of n items, a seeded random choice in their order (None: all of them)."""
    check_value("max_images", max_images, optional(integer(1)))  # -1 would silently drop one
    if max_images is None or max_images >= n:
        return None
    return np.sort(np.random.default_rng(0).permutation(n)[:max_images])


def dataset_class_names(cfg: Config) -> list[str]:
    """The cleaned class names of `cfg.dataset` in label order, read from its annotations or
    folders (no image is decoded): what a synthetic set of that dataset is drawn for."""
    spec = DATASETS.get(cfg.dataset)
    if spec is None or spec.shipped is not None or not cfg.data_root:
        return load_dataset(cfg, "test", max_images=1).class_names  # its own one-line errors
    _, raw_names = _read_pairs(spec, "train", Path(cfg.data_root).expanduser(), cfg.download,
                               0, 0.2, None)
    return _clean_names(spec, raw_names)


def _clean_names(spec: DatasetSpec, raw_names: list[str]) -> list[str]:
    return clean_class_names([n.replace("/", " ") for n in raw_names],
                             dataset=spec.prompt_key or spec.name)


def _decode_split(spec: DatasetSpec, split: str, root: Path, size, download: bool,
                  max_images: int | None, split_seed: int, test_fraction: float,
                  split_dir, workers: int) -> ImageSet:
    """One split of a dataset read from disk: its reader's (file, label) pairs, decoded."""
    check_value("size", size, "image_size")
    pairs, raw_names = _read_pairs(spec, split, root, download, split_seed, test_fraction,
                                   split_dir)
    pick = _first_of(len(pairs), max_images)
    if pick is not None:
        pairs = [pairs[i] for i in pick]
    desc = f"{spec.name} {split}"
    if streams(len(pairs), size):  # too large to hold decoded: read from disk as batches need it
        images = stream_pairs(pairs, size, "crop", _clean_names(spec, raw_names), desc, workers)
        labels = images.labels
    else:
        images, labels = decode_images(pairs, size, "crop", workers=workers, desc=desc)
    if not len(labels):
        raise FileNotFoundError(f"{spec.name}: no readable images for split {split!r} in {root}; "
                                f"expected {spec.layout}")
    if isinstance(images, StreamSet):
        return images
    return ImageSet(images, labels, _clean_names(spec, raw_names))


def _read_pairs(spec: DatasetSpec, split: str, root: Path, download: bool, split_seed: int,
                test_fraction: float, split_dir) -> tuple[Pairs, list[str]]:
    """The (file, label) pairs of one split and the raw class names, from the reader of its
    layout, after the layout's required paths are checked (or downloaded)."""
    check_value("test_fraction", test_fraction, number(0, 1, open_low=True))
    missing = [r for r in spec.required if not (root / r).exists()]
    if missing and not (download and spec.fetches):
        hint = (f"; pass download=True (--download) to fetch {spec.fetches}, or point data_root "
                f"(--set data_root=DIR) at a copy" if spec.fetches else "")
        raise FileNotFoundError(f"{spec.name}: {root / missing[0]} not found; "
                                f"expected {spec.layout}{hint}")
    if missing:
        print(f"{spec.name}: downloading {spec.fetches} into {root}", file=sys.stderr)
        root.mkdir(parents=True, exist_ok=True)  # torchvision downloads into it, not above it
    if not root.is_dir():
        raise FileNotFoundError(f"{spec.name}: {root} not found; expected {spec.layout}")
    ctx = _Ctx(spec, root, split, download, split_seed, test_fraction,
               Path(split_dir) if split_dir else None)
    return spec.reader(ctx)


# ---------------------------------------------------------------- GPU cost of generation
CLASS_COUNTS = {"aircraft": 100, "cars": 196, "food101": 101, "dtd": 47, "sun397": 397,
                "caltech101": 101, "pets": 37, "flowers102": 102, "dogs": 120, "cub": 200}
# An ESTIMATE, not a measurement (no GPU was lent when it was written): SD v1.5, 512 px, fp16,
# SDPA, 25 DPM-Solver++ steps with guidance. Basis: ~31 it/s for one 512 px image with guidance
# on an A100 80GB with diffusers + torch 2.1 SDPA (fal-ai/stable-diffusion-benchmarks), i.e.
# ~1.2 images/s at 25 steps, and ~1.5 images/s with batch 16; H100 taken as ~2x an A100.
ESTIMATED_IMAGES_PER_S = {"A100": 1.5, "H100": 3.0}  # notebook 07 and README's cost table


def generation_hours(images_per_s: float, per_class: int = 1000):
    """GPU hours to generate `per_class` images for every dataset of the paper profile (the
    registry's, less the mini target and imagefolder) at `images_per_s` (measure yours with
    benchmarks/bench_generate.py --profile paper), as a pandas table."""
    check_value("images_per_s", images_per_s, number(0, open_low=True))
    rows = [{"dataset": name, "classes": n, "images": n * per_class,
             "gpu_hours": round(n * per_class / images_per_s / 3600, 1)}
            for name, n in CLASS_COUNTS.items()]
    return pd.DataFrame(rows)
