"""A synthetic set on disk: file names, per-image seeds, the manifest, and what a rerun keeps.

A set is an ImageFolder, `out/<label:03d>.<class_slug>/<index:05d>.png`, plus
`out/metadata.jsonl` (one row per image, the `datasets` imagefolder convention: a `file_name`
column), `out/README.md` (a dataset card whose YAML declares `label` a `class_label` with the
class names) and `out/run.json` (the resolved config, the generation options and package
versions). The label index leads each folder's name, zero-padded as CUB numbers its folders, so
that the alphabetical order every ImageFolder reader uses (torchvision's `class_to_idx`) is the
label order of the manifest. Sets written before (folders named by the slug alone) stay
readable, and a rerun into one keeps its folders. `generate.py` draws the images; this module
decides which of them a rerun can keep, and writes the manifest and the card.

Taught in notebook 02.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path

from bridgelib.files import (MAX_JSON_BYTES, MAX_MANIFEST_BYTES, atomic_write_bytes, read_bytes,
                             write_json)
from bridgelib.locks import LOCK_NAME

# Heavy third-party modules (pandas, PIL) are imported inside the functions that use them, so that
# `import bridgelib` and `bridge --help` do not load them.

COLUMNS = ("file_name", "label", "class_name", "prompt", "negative_prompt", "seed",
           "guidance_scale", "num_inference_steps", "scheduler", "model", "style_token",
           "width", "height")


def image_seed(run_seed: int, class_idx: int, index: int) -> int:
    """The seed of one image: sha256 of "run_seed/class_idx/index", first 8 bytes, top bit off.

    A hash (not run_seed + counter) keeps the seeds of neighbouring runs and classes unrelated;
    the int63 fits a torch.Generator and an int64 column.
    """
    digest = hashlib.sha256(f"{run_seed}/{class_idx}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def class_slug(name: str) -> str:
    """A folder name for a class: ASCII, lowercase, spaces -> '_', only [a-z0-9_-]."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9_-]", "", re.sub(r"\s+", "_", s.strip()))


def class_folders_of(names: list[str]) -> list[str]:
    """The folder of each class: its label index, zero-padded to 3 digits (more only past 999
    classes), a dot and its slug (`000.t-shirttop`), so that folder order is label order; the
    index alone for a name without ASCII letters or digits. Refuses two classes whose slugs
    are one (their folders would differ only by the index), naming both."""
    legacy = legacy_class_folders(names)  # refuses two classes with one slug
    width = max(3, len(str(len(names) - 1)))
    return [f"{i:0{width}d}.{class_slug(n)}" if class_slug(n) else f"{i:0{width}d}"
            for i, (n, _) in enumerate(zip(names, legacy))]


def legacy_class_folders(names: list[str]) -> list[str]:
    """The folders of sets written before the label index led their names: the slug (or
    class_NNN for a name without ASCII letters or digits), refusing two classes that would share
    one folder, naming both."""
    folders = [class_slug(n) or f"class_{i:03d}" for i, n in enumerate(names)]
    seen: dict[str, str] = {}
    for name, folder in zip(names, folders):
        if folder in seen:
            raise ValueError(f"class names {seen[folder]!r} and {name!r} share the folder "
                             f"{folder!r}; rename one")
        seen[folder] = name
    return folders


def set_class_folders(out: Path, names: list[str]) -> list[str]:
    """The class folders a (re)run writes into `out`: the legacy slug folders if the set there
    was written with them (its manifest names one of them), so a resumed old set stays one set;
    else the label-ordered ones."""
    new, old = class_folders_of(names), legacy_class_folders(names)
    listed = {r["file_name"].split("/")[0] for r in manifest_rows(old, [out / "metadata.jsonl",
                                                                        *manifest_parts(out)]).values()}
    return old if listed else new


# The type of each manifest column, as `datasets` features in YAML (`label`: the class names).
_FEATURES = {"class_name": "string", "prompt": "string", "negative_prompt": "string",
             "seed": "int64", "guidance_scale": "float64", "num_inference_steps": "int64",
             "scheduler": "string", "model": "string", "width": "int64", "height": "int64"}


def card_features(class_names: list[str]) -> list[dict]:
    """The set's features as a dataset card's YAML lists them: the image, `label` a class_label
    whose names are the class names in label order, then every other manifest column."""
    features = [{"name": "image", "dtype": "image"},
                {"name": "label", "dtype": {"class_label": {
                    "names": {str(i): n for i, n in enumerate(class_names)}}}}]
    for column in COLUMNS[2:]:  # after file_name (the image) and label
        features.append({"name": column, "struct": [{"name": "name", "dtype": "string"},
                                                    {"name": "sha256", "dtype": "string"}]}
                        if column == "style_token" else {"name": column, "dtype": _FEATURES[column]})
    return features


def write_card(out: Path, options: dict, folders: list[str]) -> Path:
    """`out/README.md`: the set's dataset card. Its YAML (huggingface_hub's DatasetCardData)
    declares the features twice, as the Hub reads them (`dataset_info`) and as `datasets` applies
    them when it loads the folder (`configs`: `datasets.load_dataset(SET)` gives `label` a
    ClassLabel with the class names). It holds no image count, so it stays true on a resume or
    for a subset. `folders`: the set's class folders (label-ordered, or an older set's slugs)."""
    from huggingface_hub import DatasetCardData
    names = list(options["class_names"])
    token = options.get("style_token")
    data = DatasetCardData(
        task_categories=["image-classification", "text-to-image"], tags=["synthetic", "bridgelib"],
        configs=[{"config_name": "default", "features": card_features(names)}],
        dataset_info={"features": card_features(names)})
    body = (f"# Synthetic images of {len(names)} classes\n\n"
            f"Drawn by `bridge generate` (bridgelib) with `{options['model']}`: template "
            f"`{options['template']}`, guidance {options['guidance_scale']}, "
            f"{options['num_inference_steps']} steps of {options['scheduler']}, run seed "
            f"{options['seed']}"
            + (f", style token `{token['name']}` (sha256 {token['sha256'][:12]}...)" if token else "")
            + ". Each image's prompt and seed are in `metadata.jsonl`; `run.json` records the "
            "whole configuration and package versions.\n\n"
            + ("Class folders are numbered in label order (`000.<class>`), so torchvision's "
               "`ImageFolder(SET).class_to_idx` agrees with the `label` column. "
               if folders == class_folders_of(names) else
               "Class folders are named by class alone (written before bridgelib numbered them), "
               "so their alphabetical order is not the label order: use the `label` column. ")
            + "`datasets.load_dataset(SET)` reads `label` as a `ClassLabel` with these names:\n\n"
            + "".join(f"- {i}: {n}\n" for i, n in enumerate(names)))
    atomic_write_bytes(out / "README.md", f"---\n{data.to_yaml()}\n---\n\n{body}".encode())
    return out / "README.md"


def read_manifest(out: str | Path):
    """metadata.jsonl of a synthetic set as a pandas DataFrame (one row per image).

    The one reader of a set's manifest: every row is checked here, so a row that is not JSON,
    lacks its file_name or class_name, or names a file outside the set (`../x.png`, an
    absolute path) is a one-line ValueError naming the line, before anything reads or copies
    the files it names."""
    import pandas as pd
    path = Path(out) / "metadata.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist; is {str(out)!r} a synthetic set?")
    data = read_bytes(path, MAX_MANIFEST_BYTES, "manifest")  # a FIFO or /dev/zero: refused
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not text; expected one JSON object per line as "
                         f"`bridge generate` writes") from None
    rows = [_manifest_row(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _manifest_row(path: Path, n: int, line: str) -> dict:
    where = f"{str(path)!r} line {n}"
    expected = "expected one JSON object per line as `bridge generate` writes"
    try:
        row = json.loads(line)
    except ValueError:
        raise ValueError(f"{where} is not JSON; {expected}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where} is not a JSON object; {expected}")
    for key in ("file_name", "class_name"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"{where} has no {key} (a string); {expected}")
    name = row["file_name"]
    parts = name.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or "\\" in p or ":" in p for p in parts):
        raise ValueError(f"{where} has file_name {name!r}, which is not <class>/<image> inside "
                         f"{str(path.parent)!r}; a manifest may not name files outside its set")
    return row


def check_folder(out: Path, options: dict, overwrite: bool, reads: Path | None = None) -> None:
    """Refuse to mix two different runs in one folder (one-line error naming the option), to
    write into (or around) `reads`, the dataset folder being read, and an `overwrite` that would
    delete anything the folder's own set does not list (`own_files`)."""
    if reads is not None:
        _refuse_overlap(out, reads)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise ValueError(f"output {str(out)!r} exists and is not a folder; choose another folder")
    if overwrite:
        own_files(out)  # refused here, before anything loads, if it would delete a foreign file
        return
    run = out / "run.json"
    if not run.exists():
        if any(p.name != LOCK_NAME for p in out.iterdir()):
            raise ValueError(f"output folder {str(out)!r} is not empty and holds no run.json; "
                             f"choose another folder (overwrite=True (--overwrite) replaces "
                             f"only a set that `bridge generate` wrote)")
        return
    _refuse_links(out)  # a rerun writes into the class folders: never through a link
    data = read_bytes(run, MAX_JSON_BYTES, "run.json")  # a FIFO would hang a plain read
    try:
        old = json.loads(data)["options"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{str(run)!r} is not a run.json of `bridge generate`, so nothing in "
                         f"{str(out)!r} is known to be a generated set; choose another folder"
                         ) from None
    for key, value in options.items():
        if old.get(key) != value:
            raise ValueError(f"{str(out)!r} holds a different synthetic set ({key}: "
                             f"{old.get(key)!r}, requested {value!r}); pass overwrite=True "
                             f"(--overwrite) or choose another folder")


def _refuse_links(out: Path) -> None:
    """A symlink in a set or one of its folders: writing or deleting through it would reach
    outside the set."""
    for p in sorted(out.iterdir()):
        for q in [p] if p.is_symlink() or not p.is_dir() else [p, *sorted(p.iterdir())]:
            if q.is_symlink():
                rel = q.relative_to(out).as_posix()
                raise ValueError(f"{str(out)!r} holds the symlink {rel!r}; a set's files are "
                                 f"written only inside its folder, never through a link: remove "
                                 f"the link or choose another folder")


def _refuse_overlap(out: Path, dataset: Path) -> None:
    """An output folder that is, contains or is inside the dataset folder being read."""
    o, d = out.expanduser().resolve(), dataset.expanduser().resolve()
    how = "is" if o == d else "is inside" if o.is_relative_to(d) else \
        "contains" if d.is_relative_to(o) else None
    if how:
        raise ValueError(f"output folder {str(out)!r} {how} the dataset folder {str(dataset)!r} "
                         f"being read; choose a folder outside it")


_TEMP = re.compile(r"\..+\.tmp")            # atomic_write_bytes' temp files
_OWN_TOP = re.compile(r"run\.json|README\.md|metadata\.jsonl|metadata\.rank\d+\.jsonl")
_OWN_IMAGE = re.compile(r"\d{5}\.png")       # <index:05d>.png, the name generate gives


def own_files(out: Path) -> list[Path]:
    """Every file of the set in `out` that `bridge generate` wrote, which is all `overwrite`
    may delete: run.json, the manifests, temp files, and in each class folder (of run.json's
    classes, or named by a manifest row) the images the manifest lists or that carry the
    generator's own names. Anything else (another file, a folder, a symlink, which is never
    followed) is a one-line ValueError naming it: nothing is deleted then."""
    def refuse(what: str):
        raise ValueError(f"not replacing {str(out)!r}: it holds {what}, which is not a file of "
                         f"the synthetic set that its run.json and manifest describe; move it "
                         f"or choose another folder")
    if out.is_symlink():
        refuse("itself as a symlink (to "
               f"{str(out.resolve())!r}); pass the folder it points to")
    try:
        names = json.loads(read_bytes(out / "run.json", MAX_JSON_BYTES,
                                      "run.json"))["options"]["class_names"]
        folders = set(class_folders_of(names)) | set(legacy_class_folders(names))
    except (OSError, ValueError, KeyError, TypeError):
        if not any(p.name != LOCK_NAME for p in out.iterdir()):
            return []
        raise ValueError(f"{str(out)!r} holds no run.json of `bridge generate`, so nothing in it "
                         f"is known to be a generated set; overwrite=True (--overwrite) replaces "
                         f"only such a set: choose another folder") from None
    listed = set(read_manifest(out).file_name) if (out / "metadata.jsonl").exists() else set()
    folders |= {name.split("/")[0] for name in listed}
    own = []
    for p in sorted(out.iterdir()):
        if p.name == LOCK_NAME and not p.is_symlink():  # the writer's lock: held, never deleted
            continue
        if p.is_symlink():
            refuse(f"the symlink {p.name!r}")
        if p.is_file() and (_OWN_TOP.fullmatch(p.name) or _TEMP.fullmatch(p.name)):
            own.append(p)
            continue
        if not p.is_dir() or p.name not in folders:
            refuse(repr(p.name))
        for f in sorted(p.iterdir()):
            rel = f"{p.name}/{f.name}"
            if f.is_symlink() or not f.is_file() or not (
                    rel in listed or _OWN_IMAGE.fullmatch(f.name) or _TEMP.fullmatch(f.name)):
                refuse(f"the symlink {rel!r}" if f.is_symlink() else repr(rel))
            own.append(f)
    return own


def _clear_folder(out: Path) -> None:
    """Remove a previous set: exactly `own_files(out)` (refusing, before deleting anything, a
    folder that holds anything else), then the class folders left empty."""
    if not out.is_dir():
        return
    own = own_files(out)
    for path in own:
        path.unlink(missing_ok=True)  # unlink removes a name, never what a link points to
    for sub in {p.parent for p in own if p.parent != out}:
        if not any(sub.iterdir()):
            sub.rmdir()


def prepare_folder(out: Path, run: dict, overwrite: bool, slugs: list[str],
                    per_class: int) -> dict[tuple[int, int], dict]:
    """Clear (overwrite) or create the folder, write run.json, and return the finished images,
    with the manifest rewritten to hold exactly them (one process: rank 0 when launched)."""
    if overwrite:
        _clear_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run.json", run)
    write_card(out, run["options"], slugs)
    o = run["options"]
    done = _scan_folder(out, slugs, per_class, o["seed"], o["resolution"])
    write_manifest(out, done)  # drops bad and partial rows before new ones are appended
    for part in manifest_parts(out):  # an interrupted launch's rows, now in metadata.jsonl
        part.unlink()
    return done


def manifest_parts(out: Path) -> list[Path]:
    return sorted(out.glob("metadata.rank*.jsonl"))


def manifest_rows(slugs: list[str], paths) -> dict[tuple[int, int], dict]:
    """(label, index) -> row of the manifest files that exist; partial and foreign lines skipped."""
    label_of = {s: c for c, s in enumerate(slugs)}
    rows: dict[tuple[int, int], dict] = {}
    for path in (p for p in paths if p.exists()):
        text = read_bytes(path, MAX_MANIFEST_BYTES, "manifest").decode("utf-8", "replace")
        for line in text.splitlines():
            try:
                row = json.loads(line)
                slug, name = row["file_name"].split("/")
                rows[(label_of[slug], int(Path(name).stem))] = row
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a partial last line of an interrupted run, or a foreign row
    return rows


def _scan_folder(out: Path, slugs: list[str], per_class: int, seed: int,
                 resolution: int) -> dict[tuple[int, int], dict]:
    """Finished images: manifest rows (parts of a launch included) whose PNG is valid.
    Cleans temp files and stray PNGs."""
    for tmp in (*out.glob("*.tmp"), *out.glob("*/*.tmp")):  # pathlib globs match dot files
        tmp.unlink(missing_ok=True)
    rows = manifest_rows(slugs, [out / "metadata.jsonl", *manifest_parts(out)])
    done = {key: row for key, row in rows.items()
            if row.get("seed") == image_seed(seed, *key) and row.get("label") == key[0]
            and _valid_png(out / row["file_name"], resolution)}
    for c, slug in enumerate(slugs):  # unrecorded images beyond per_class: stale partial output
        for f in (out / slug).glob("*.png") if (out / slug).is_dir() else ():
            if f.stem.isdigit() and int(f.stem) >= per_class and (c, int(f.stem)) not in done:
                f.unlink()
    return done


def _valid_png(path: Path, resolution: int) -> bool:
    from PIL import Image
    try:
        with Image.open(path) as im:
            ok = im.format == "PNG" and im.size == (resolution, resolution)
            im.verify()
        return ok
    except Exception:
        return False


def write_manifest(out: Path, done: dict[tuple[int, int], dict]) -> None:
    """Rewrite metadata.jsonl atomically: one row per image, sorted by (label, index)."""
    rows = [json.dumps({k: done[key].get(k) for k in COLUMNS}) for key in sorted(done)]
    atomic_write_bytes(out / "metadata.jsonl", ("\n".join(rows) + "\n" if rows else "").encode())
