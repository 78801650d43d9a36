"""Seeded draws of real data, made once: k-shot subsets, and train/test splits where the data
fix none. Every run, machine and notebook then sees the same images.

- `kshot_indices` is the one k-shot draw: k images per class without replacement, classes in
  label order, from one `numpy.random.default_rng(seed)`; `seed` is the run's seed.
  `kshot_subset` applies it to an `ImageSet`; `kshot_split` records it in a file.
- A dataset read from disk keeps its drawn splits as JSON in `<root>/splits/` (or `split_dir`):
  k-shot subsets (`<name>_<k>shot_seed<s>.json`) and the train/test splits of SUN397,
  Caltech-101 and a single-folder ImageFolder (`fixed_split`). Delete a file to draw again.
  Your own folder (`imagefolder`) is never written into: its splits live in the project's cache,
  `$BRIDGELIB_CACHE/splits/<folder>-<hash of its path>/` (default `cache/` of the repository),
  so a read-only dataset works; a split file already in `<root>/splits/` is still read there.
- The mini target's pool ships fixed in `data/`, so its k-shot draw is made again each time and
  nothing is written (`bridgelib.datasets.load_dataset`).

Taught in notebook 07.
"""
from __future__ import annotations

import hashlib
import numbers
from pathlib import Path
from typing import Callable

import numpy as np

from bridgelib.config import cache_root, check_value
from bridgelib.data import ImageSet, Pairs
from bridgelib.files import read_json, write_json
from bridgelib.validation import integer

SHOTS = (1, 2, 4, 8, 16, "full")   # the paper's shot counts


def parse_shots(shots: int | str | None) -> int | None:
    """'full' / None -> None (the whole pool); otherwise a positive int."""
    if shots is None or shots == "full":
        return None
    if isinstance(shots, str) and shots.strip().isdigit():
        shots = int(shots)
    if isinstance(shots, numbers.Integral) and not isinstance(shots, bool):
        shots = int(shots)  # a numpy integer, e.g. a results store's `shots` column
    return check_value("shots", shots, (integer(1)[0], "a positive integer or 'full'"))


def kshot_indices(labels, shots: int | str | None, seed: int = 0) -> list[int]:
    """Sorted indices of `shots` images per class (all of them for 'full'): the one k-shot draw
    (module docstring). Refused, in one line, above the smallest class."""
    labels = np.asarray(labels)
    k = parse_shots(shots)
    if k is None:
        return list(range(len(labels)))
    classes, counts = np.unique(labels, return_counts=True)
    smallest = int(counts.min()) if len(counts) else 0
    if k > smallest:
        raise ValueError(f"shots={k} is invalid; the training pool has {smallest} images in its "
                         f"smallest class (valid: 1..{smallest} or 'full')")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for y in classes
                  for i in rng.choice(np.flatnonzero(labels == y), k, replace=False))


def kshot_subset(images: ImageSet, shots: int | str | None, seed: int = 0) -> ImageSet:
    """`shots` images per class of a set (`kshot_indices`), or the set itself for 'full'."""
    if parse_shots(shots) is None:
        return images
    return images.subset(kshot_indices(images.labels.numpy(), shots, seed))


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
    return train.subset(_checked_indices(split, path, len(labels)))


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
    root = Path(root).expanduser().resolve()
    cache = cache_root()
    return cache / "splits" / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def save_split(path: str | Path, split: dict) -> Path:
    """Write a split (JSON, atomically) so later runs read it instead of drawing again."""
    return write_json(path, split)


def load_split(path: str | Path) -> dict:
    """A split file through the one reader (a regular file holding a JSON object)."""
    try:
        return read_json(path, "split file")
    except ValueError as e:
        raise ValueError(f"{e}; delete it to draw again") from None


def _checked_indices(split: dict, path: Path, n: int) -> list[int]:
    """A k-shot file's indices: distinct integers in 0..n-1, else one line naming the file."""
    idx = split.get("indices")
    if not isinstance(idx, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                            for i in idx):
        raise ValueError(f"split file {str(path)!r} has no list of integer indices; delete it "
                         f"to draw again")
    bad = next((i for i in idx if not 0 <= i < n), None)
    if bad is not None:
        raise ValueError(f"split file {str(path)!r} lists index {bad}, outside the training "
                         f"set's 0..{n - 1}; delete it to draw again")
    if len(set(idx)) != len(idx):
        twice = next(i for i in idx if idx.count(i) > 1)
        raise ValueError(f"split file {str(path)!r} lists index {twice} twice; delete it to "
                         f"draw again")
    return idx


def fixed_split(name: str, root: Path, pairs: Pairs, split: str, rule: str, seed: int,
                n_train: Callable[[int], int], split_dir: Path | None = None) -> Pairs:
    """The pairs of `split` under a per-class seeded train/test split (`n_train(n)` of a class's
    n images train), stored by file name relative to `root` in `<name>_<rule>_seed<seed>.json`."""
    path = split_file(name, root, f"{rule}_seed{seed}", split_dir)
    rel = [p.relative_to(root).as_posix() for p, _ in pairs]
    if path.exists():
        drawn = load_split(path)
        _check_drawn(drawn, path)
    else:
        rng, labels, train = np.random.default_rng(seed), np.array([y for _, y in pairs]), set()
        for y in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == y))
            train.update(int(i) for i in idx[:n_train(len(idx))])
        drawn = {"dataset": name, "rule": rule, "seed": seed,
                 "train": sorted(rel[i] for i in train),
                 "test": sorted(r for i, r in enumerate(rel) if i not in train)}
        save_split(path, drawn)
    if set(drawn["train"]) | set(drawn["test"]) != set(rel):
        raise ValueError(f"split file {path} lists other files than {root} holds; delete it "
                         "to draw a new split (old results then no longer compare)")
    keep = set(drawn[split])
    return [pr for pr, r in zip(pairs, rel) if r in keep]


def _check_drawn(drawn: dict, path: Path) -> None:
    """A train/test split file: two lists of file names, no file in both (a test set that is
    the training set would score the memory, not the model)."""
    parts = [drawn.get(k) for k in ("train", "test")]
    if not all(isinstance(p, list) and all(isinstance(f, str) for f in p) for p in parts):
        raise ValueError(f"split file {str(path)!r} has no 'train' and 'test' lists of file "
                         f"names; delete it to draw again")
    both = sorted(set(parts[0]) & set(parts[1]))
    if both:
        raise ValueError(f"split file {str(path)!r} lists {len(both)} file(s) in both train "
                         f"and test (first {both[0]!r}); delete it to draw a new split")
