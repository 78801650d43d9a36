"""ImageFolders: `root/<class>/<image>`, or `root/train/<class>/<image>` + `root/test/...`.

One walker, `class_files`, lists a folder's class folders and their image files (not hidden, by
suffix, sorted); everything that reads a folder goes through it:

- `check_image_folder` reads every image once and returns a `FolderReport` (classes, readable
  images per class, unreadable files by name, odd sizes, non-image files), refusing in one line
  what no run could use;
- `load_image_folder` decodes a folder of class folders to an `ImageSet` (synthetic sets written
  by `bridge generate`, `--synthetic`), checked the same way as it is read;
- the registry's folder datasets (`dogs`, `cub`, `imagefolder` in `bridgelib.datasets`) list
  their files with it, then decode them as every registry dataset is decoded;
- `export_image_folder` writes an `ImageSet` as an ImageFolder (notebook 07).

Taught in notebooks 02, 03, 04, 07.
"""
from __future__ import annotations

import io
import re
import shutil
import warnings
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bridgelib.data import ImageSet, StreamSet, check_memory, read_image, streams
from bridgelib.files import atomic_write_bytes
from bridgelib.manifest import listed_classes, read_record
from bridgelib.prompts import clean_class_names, validate_class_names

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
FOLDER_LAYOUT = "an ImageFolder: <root>/<class>/<image>"
SPLIT_LAYOUT = f"{FOLDER_LAYOUT} (or <root>/train/<class>/<image> and <root>/test/<class>/<image>)"
FOLDER_PREFIX = re.compile(r"^(n\d{8}-|\d{3}\.)")  # Stanford Dogs' WordNet ids, CUB's numbering

# One class folder as the walker finds it: its path, its image files, its other files.
ClassFolder = namedtuple("ClassFolder", "path images others")


def class_folders(d: Path) -> list[Path]:
    """Class folders: not hidden, and not the `splits/` folder where split files are kept."""
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name != "splits") if d.is_dir() else []


def class_files(base: Path) -> list[ClassFolder]:
    """The one walker: each class folder of `base` with its image files (by suffix) and its other
    files, hidden files left out, both sorted by name. Two class folders that are one folder
    through a symlink, or an image that is a symlink to another class's image, are refused in
    one line naming both: the same images would train under two labels."""
    found, folders, images = [], {}, {}
    for folder in class_folders(base):
        real = folder.resolve()
        if real in folders:
            raise ValueError(f"class folders {str(folders[real])!r} and {str(folder)!r} are one "
                             f"folder ({str(real)!r}) through a symlink: its images would train "
                             f"under two labels; remove the link")
        folders[real] = folder
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for p in files:
            key = p.resolve() if p.is_symlink() else real / p.name
            other = images.setdefault(key, p)
            if other.parent != p.parent:
                raise ValueError(f"{str(p)!r} and {str(other)!r} are one image through a "
                                 f"symlink, in two class folders: it would train under two "
                                 f"labels; remove the link")
        found.append(ClassFolder(folder, [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES],
                                 [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]))
    return found


class FolderError(FileNotFoundError, ValueError):
    """A missing image folder: a ValueError like every other bad folder, and a FileNotFoundError."""


@dataclass
class FolderReport:
    """What `check_image_folder` found: one row per (split, class folder), plus what it skipped.

    `split` is 'all' for a folder of class folders, else 'train' or 'test'.
    """
    root: Path
    rows: list[dict]                  # split, class, images (readable), broken_files, odd_files
    odd: dict[str, str]               # relative path -> why it looks odd (tiny, elongated)
    ignored: list[str]                # files that are not images by their suffix (not read)
    sizes: dict[str, int]             # "WxH" -> number of readable images of that size

    @property
    def classes(self) -> list[str]:
        return sorted({r["class"] for r in self.rows})

    @property
    def counts(self) -> dict[str, int]:
        """Readable images per class (all splits together)."""
        return {c: sum(r["images"] for r in self.rows if r["class"] == c) for c in self.classes}

    @property
    def broken(self) -> list[str]:
        """Unreadable files (relative to root): reported, and skipped by every loader."""
        return [_rel(r, f) for r in self.rows for f in r["broken_files"]]

    skipped = broken

    @property
    def empty(self) -> list[str]:
        """Class folders without one readable image ('train/cat' in a split layout)."""
        return [_rel(r, "") for r in self.rows if not r["images"]]

    def table(self) -> pd.DataFrame:
        """A pandas table: one row per split and class folder, the class name prompts will use
        (prefixes such as Stanford Dogs' 'n02085620-' dropped), and the names of unreadable and
        odd files."""
        names = clean_class_names([FOLDER_PREFIX.sub("", r["class"]) for r in self.rows])
        return pd.DataFrame([{"split": r["split"], "class": r["class"], "class_name": name,
                              **{k: r[k] for k in ("images", "broken_files", "odd_files")}}
                             for r, name in zip(self.rows, names)])

    def __str__(self) -> str:
        parts = []
        for split in dict.fromkeys(r["split"] for r in self.rows):
            n = [r["images"] for r in self.rows if r["split"] == split]
            parts.append(f"{'' if split == 'all' else split + ' '}{sum(n)} "
                         f"({min(n)}..{max(n)} per class)")
        common = max(self.sizes, key=self.sizes.get) if self.sizes else "-"
        lines = [f"{self.root}: {len(self.classes)} classes; readable images: {', '.join(parts)}; "
                 f"most common size {common} px"]
        lines.append(f"skipped {len(self.broken)} unreadable file(s)"
                     + (": " + ", ".join(self.broken) if self.broken else ""))
        lines += [f"odd: {path} ({why})" for path, why in self.odd.items()]
        lines += [f"empty class folder: {e}" for e in self.empty]
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} non-image file(s): "
                         f"{', '.join(self.ignored[:5])}{' ...' if len(self.ignored) > 5 else ''}")
        return "\n".join(lines)



def check_image_folder(root: str | Path, min_per_class: int = 1,
                       min_side: int = 32) -> FolderReport:
    """Read every image of your ImageFolder once and report what a training run would meet.

    The report lists the classes, readable images per class, unreadable files by name (every
    loader skips them), odd images (shorter side under `min_side` px, or longer than 4:1) and
    files that are not images. It refuses, with a one-line ValueError naming the folder, a
    folder that is missing or empty, holds no class folders, or has a class with fewer than
    `min_per_class` readable images (0: report empty classes instead of refusing).
    Both layouts the `imagefolder` dataset reads are accepted: `root/<class>/*` and
    `root/train/<class>/*` + `root/test/<class>/*`.
    """
    return _read_folder(Path(root).expanduser(), None, min_per_class, min_side, splits=True)[0]


def load_image_folder(root: str | Path, size: int, class_names: list[str] | None = None) -> ImageSet:
    """An ImageFolder (`root/<class>/<image>`) decoded once to (N, 3, size, size) uint8, each
    image stretched to size x size (`data.resize_image`'s `stretch`).

    Synthetic sets written by `bridge generate` are ImageFolders; their manifest names each
    folder's class, and only the images it lists are read (bridgelib.manifest).
    `class_names`, if given, fixes the label order and must match.
    The folder is checked as it is read (`check_image_folder`): an unreadable file is skipped
    with a warning naming it, not left to crash a DataLoader in epoch 3; a missing or empty
    folder, or a class without one readable image, stops here with a one-line ValueError.
    """
    root = Path(root).expanduser()
    read_record(root, required=False)  # a training run reads it at its end: checked before
    listed = listed_classes(root)  # {folder: class} of a synthetic set; None: a plain ImageFolder
    only = None if listed is None else set(listed)
    names = listed if listed is not None else {p.name: p.name for p in class_folders(root)} \
        if root.is_dir() else {}
    n = sum(len(c.images) for c in class_files(root) if only is None or c.path.name in only) \
        if root.is_dir() else 0
    stream = streams(n, size)  # too large to hold decoded: checked now, decoded as batches need it
    if not stream:  # every image is held decoded: refuse a set this machine cannot hold
        check_memory(n, size, str(root), copies=2)  # the images, then their stack
    report, decoded = _read_folder(root, None if stream else size, 1, 0, splits=False, only=only)
    found = sorted(names[r["class"]] for r in report.rows)
    if class_names is not None and found != sorted(class_names):
        raise ValueError(f"classes of {str(root)!r} ({', '.join(found)}) do not "
                         f"match the dataset's ({', '.join(sorted(class_names))})")
    order = list(class_names) if class_names is not None else found
    if report.broken:
        warnings.warn(f"{root}: skipped {len(report.broken)} unreadable image(s): "
                      f"{', '.join(report.broken)}", stacklevel=2)
    labels = [order.index(names[folder]) for folder, _ in decoded]
    if stream:  # `decoded` holds the readable files
        return StreamSet([(path, "stretch") for _, path in decoded], torch.tensor(labels), order,
                         size)
    return ImageSet(torch.stack([img for _, img in decoded]), torch.tensor(labels), order)


def export_image_folder(images: ImageSet, root: str | Path, class_names: list[str] | None = None,
                        overwrite: bool = False) -> Path:
    """Write an ImageSet as an ImageFolder: `root/<class>/<index:05d>.png`, one folder per class.

    `class_names` (default: the set's own, in label order) name the folders, spaces as '_'
    ('ankle boot' -> ankle_boot/), which `bridgelib.prompts.clean_class_name` turns back into
    words. Used to give the mini profile "your own folder" (notebook 07). A non-empty `root` is
    replaced only with overwrite=True, and only if it holds nothing but class folders of images.
    """
    root = Path(root).expanduser()
    names = validate_class_names(list(class_names or images.class_names))
    if len(names) != len(images.class_names):
        raise ValueError(f"got {len(names)} class names for {len(images.class_names)} classes")
    folders = [re.sub(r"\s+", "_", n.strip()) for n in names]
    shared = {f: n for f, n in zip(folders, names)}
    for f, n in zip(folders, names):
        if shared[f] != n:  # two names, one folder: the second would mix into the first
            raise ValueError(f"class names {n!r} and {shared[f]!r} share the folder {f!r}; "
                             f"rename one")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{str(root)!r} is not empty; pass overwrite=True to replace it")
        _remove_image_folder(root)
    for i, (img, y) in enumerate(zip(images.images, images.labels.tolist())):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="PNG")
        atomic_write_bytes(root / folders[y] / f"{i:05d}.png", buf.getvalue())
    return root


def walk_image_folder(root: Path, splits: bool,
                      only: set[str] | None = None) -> list[tuple[str, ClassFolder]]:
    """(split, class folder) of every class folder the check and the loader read, in order;
    split is 'all' for a folder of class folders, else 'train' or 'test'. Refuses, in one line
    naming the folder and the layout, a missing folder (FolderError), one without class folders,
    and (unless `splits`) a train/ + test/ layout. only: just these class folders (the ones a
    synthetic set's manifest lists)."""
    layout = SPLIT_LAYOUT if splits else FOLDER_LAYOUT
    if not root.is_dir():
        raise FolderError(f"image folder {str(root)!r} does not exist; expected {layout}")
    parts = [s for s in ("train", "test") if class_folders(root / s) and only is None]
    if parts and not splits:
        raise ValueError(f"image folder {str(root)!r} holds {' and '.join(parts)} folders of "
                         f"classes; load each one (expected {FOLDER_LAYOUT})")
    found = []
    for split, base in [(s, root / s) for s in parts] or [("all", root)]:
        folders = class_files(base)
        if not folders:
            loose = [p for p in base.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            what = (f"holds {len(loose)} image(s) but no class folders" if loose else
                    "is empty" if not any(base.iterdir()) else "holds no class folders")
            raise ValueError(f"image folder {str(base)!r} {what}; expected {layout}")
        found += [(split, c) for c in folders if only is None or c.path.name in only]
    return found


def _read_folder(root: Path, size: int | None, min_per_class: int, min_side: int, splits: bool,
                 only: set[str] | None = None):
    """Walk and read (decode, when `size` is given) an ImageFolder: (FolderReport,
    [(class folder name, image (3, size, size) uint8, or its file when size is None)])."""
    if isinstance(min_per_class, bool) or not isinstance(min_per_class, int) or min_per_class < 0:
        raise ValueError(f"min_per_class={min_per_class!r} is invalid; expected an integer >= 0")
    report, decoded = FolderReport(root, [], {}, [], {}), []
    for split, folder in walk_image_folder(root, splits, only):
        row = _read_class(folder, split, report, size, min_side, decoded)
        if row["images"] < min_per_class:
            skipped = (f" (skipped unreadable: {', '.join(row['broken_files'])})"
                       if row["broken_files"] else "")
            raise ValueError(f"class folder {str(folder.path)!r} has {row['images']} readable "
                             f"image(s){skipped}; expected at least {min_per_class} in each "
                             f"class of {FOLDER_LAYOUT}")
        report.rows.append(row)
    return report, decoded


def _read_class(folder: ClassFolder, split: str, report: FolderReport, size: int | None,
                min_side: int, decoded: list) -> dict:
    """One class folder: its report row; odd sizes, ignored files and decoded images are added
    to `report` and `decoded` as they are met."""
    name = folder.path.name
    row = {"split": split, "class": name, "images": 0, "broken_files": [], "odd_files": []}
    report.ignored += [p.relative_to(report.root).as_posix() for p in folder.others]
    for path in folder.images:
        rel = path.relative_to(report.root).as_posix()
        img, wh = read_image(path, size, "stretch")
        if wh is None:
            row["broken_files"].append(path.name)
            continue
        row["images"] += 1
        key = f"{wh[0]}x{wh[1]}"
        report.sizes[key] = report.sizes.get(key, 0) + 1
        if min(wh) < min_side or max(wh) > 4 * min(wh):
            report.odd[rel] = f"{key} px, {'tiny' if min(wh) < min_side else 'elongated'}"
            row["odd_files"].append(path.name)
        decoded.append((name, path if img is None else  # size None: the readable files
                        torch.from_numpy(img.copy()).permute(2, 0, 1)))
    return row


def _rel(row: dict, name: str) -> str:
    split = "" if row["split"] == "all" else row["split"]
    return "/".join(p for p in (split, row["class"], name) if p)


def _remove_image_folder(root: Path) -> None:
    """Delete an ImageFolder, refusing anything that is not class folders of image files."""
    for p in root.iterdir():
        files = list(p.iterdir()) if p.is_dir() else [p]
        if not p.is_dir() or any(f.is_dir() or f.suffix.lower() not in IMAGE_SUFFIXES
                                 for f in files):
            raise FileExistsError(f"{str(root)!r} holds {p.name!r}, which is not a class folder "
                                  f"of images; not replacing it (choose another folder)")
    shutil.rmtree(root)


# ---- warnings before a comparison that cannot tell recipes apart (your own folder) -------------
MIN_TEST_IMAGES = 1000  # below this, two standard errors of one accuracy exceed 2.5 points


def warn_small_test_split(test: ImageSet, where: str) -> bool:
    """One warning when a test split is too small to tell recipes apart: one image is 100/n
    points, and two standard errors of an accuracy near 80% are 80/sqrt(n) points (a 1-point
    difference needs about 6,400 test images). Returns whether it warned."""
    n = len(test)
    if n >= MIN_TEST_IMAGES:
        return False
    warnings.warn(f"{where}: the test split has {n} images, so one image is {100 / n:.2g} points "
                  f"and differences under about {80 / n ** 0.5:.0f} points between recipes are "
                  f"noise (telling 1 point apart needs about 6,400 test images); compare on a "
                  f"larger test split or several seeds", stacklevel=2)
    return True


def background(images: ImageSet) -> float:
    """The typical background brightness in [0, 1]: the median over images of each image's
    median pixel (most of an object photo is background)."""
    if isinstance(images, StreamSet):  # a streamed set: a seeded sample of 256, decoded
        pick = np.random.default_rng(0).permutation(len(images))[:256]
        images = images.decode(np.sort(pick))
    pixels = images.images.flatten(1).float() / 255
    return float(pixels.median(dim=1).values.median())


def warn_polarity_gap(real: ImageSet, synthetic: ImageSet, where: str) -> bool:
    """One warning when the synthetic images are drawn light-on-dark and the real ones
    dark-on-light (or the reverse): a style gap no recipe is meant to bridge. Returns whether
    it warned."""
    r, s = background(real), background(synthetic)
    if (r - 0.5) * (s - 0.5) >= 0 or abs(r - s) < 0.4:
        return False
    look = {True: "light", False: "dark"}
    warnings.warn(f"{where}: the synthetic images have {look[s > 0.5]} backgrounds (median "
                  f"{s:.2f}) and the real ones {look[r > 0.5]} (median {r:.2f}); the generator "
                  f"draws another look than your data: check a few images, or learn a style "
                  f"token (DSI) first", stacklevel=2)
    return True
