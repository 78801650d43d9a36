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

This is the one module that opens a set's `run.json` (its record: `read_record`, one error for
a missing, unreadable or malformed one) and `metadata.jsonl` (`read_manifest`, `write_manifest`):
the rest of the package asks it for what they hold, whether a folder is the set requested
(`differing_option`), a cached set by its options (`find_set`), the first images of a set as a
set of its own (`synthetic_subset`) and what a training run records about its set (`trained_on`).

Taught in notebook 02.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import unicodedata
import warnings
from pathlib import Path

from bridgelib.files import (MAX_JSON_BYTES, MAX_MANIFEST_BYTES, atomic_write_bytes, read_bytes,
                             write_json)
from bridgelib.locks import LOCK_NAME

# Heavy third-party modules (pandas, PIL) are imported inside the functions that use them, so that
# `import bridgelib` and `bridge --help` do not load them.

_RECORD = "run.json"          # the set's record: config, generation options, versions, result
_MANIFEST = "metadata.jsonl"  # one row per image (COLUMNS)
_CARD = "README.md"           # the dataset card (write_card)

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
    rows = manifest_rows(old, [out / _MANIFEST, *manifest_parts(out)])
    listed = {r["file_name"].split("/")[0] for r in rows.values()}
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
    atomic_write_bytes(out / _CARD, f"---\n{data.to_yaml()}\n---\n\n{body}".encode())
    return out / _CARD


def read_manifest(out: str | Path):
    """metadata.jsonl of a synthetic set as a pandas DataFrame (one row per image).

    The one reader of a set's manifest: every row is checked here, so a row that is not JSON,
    lacks its file_name or class_name, or names a file outside the set (`../x.png`, an
    absolute path) is a one-line ValueError naming the line, before anything reads or copies
    the files it names."""
    import pandas as pd
    path = Path(out) / _MANIFEST
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


# ---- the set's record (run.json) ----------------------------------------------------------------
def _record_error(path: Path, problem: str, missing: bool = False) -> Exception:
    """The one error for a set's record that is missing, unreadable or not what generate wrote."""
    message = (f"{str(path)!r} {problem}; expected the run.json that `bridge generate` writes "
               f"beside a synthetic set (a JSON object whose options list the class_names): "
               f"regenerate the set, or choose another folder")
    return FileNotFoundError(message) if missing else ValueError(message)


def read_record(out: str | Path, required: bool = True) -> dict | None:
    """The record of the set in `out` (its run.json: config, generation options, versions,
    request, result), checked: a JSON object whose `options` is an object with a list of class
    names, else the one-line error above naming the file. None when there is no record and it
    is not `required`."""
    path = Path(out) / _RECORD
    if not path.exists() and not path.is_symlink():
        if not required:
            return None
        raise _record_error(path, "does not exist", missing=True)
    try:
        data = read_bytes(path, MAX_JSON_BYTES, _RECORD)  # a FIFO would hang a plain read
    except OSError as err:
        raise _record_error(path, f"cannot be read ({err.strerror})") from None
    try:
        record = json.loads(data)
    except ValueError:  # not UTF-8 or not JSON
        raise _record_error(path, "is not JSON") from None
    if not isinstance(record, dict):
        raise _record_error(path, "is not a JSON object")
    options = record.get("options")
    if not isinstance(options, dict):
        raise _record_error(path, "has no options object")
    names = options.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _record_error(path, "has no list of class_names in its options")
    return record


def write_record(out: Path, record: dict) -> Path:
    """Write the set's record atomically (a reader sees the old record or the new one)."""
    return write_json(out / _RECORD, record)


def read_options(out: str | Path) -> dict:
    """The generation options a set was drawn with (template, guidance_scale, class_names...)."""
    return read_record(out)["options"]


def differing_option(recorded: dict, requested: dict) -> str | None:
    """The first requested option a set's recorded options differ in; None: it is that set.
    A local generator is known by its weights' fingerprint, not by its folder, so a set stays
    itself when the repository or the cache moves; the `model` entry (a path, or a hub id)
    decides only where a side has no fingerprint: hub models, and records written before
    fingerprints (those still differ from a local generator's options in the fingerprint, as
    before: which weights drew them is unknown)."""
    by_weights = None not in (recorded.get("model_fingerprint"),
                              requested.get("model_fingerprint"))
    for key, value in requested.items():
        if not (key == "model" and by_weights) and recorded.get(key) != value:
            return key
    return None


def set_records(root: str | Path) -> list[tuple[Path, dict]]:
    """(folder, record) of each set directly under `root` (a cache of sets), by folder name.
    A folder whose record is bad is left out with a warning naming it and why: the cache is
    shared by notebooks, sweeps and tools, and one broken entry must not stop a lookup that
    another set can answer (a run that writes into that folder is refused by check_folder)."""
    found = []
    for path in sorted(Path(root).glob(f"*/{_RECORD}")):
        try:
            found.append((path.parent, read_record(path.parent)))
        except (OSError, ValueError) as err:
            warnings.warn(f"left out of the cache lookup: {err}", stacklevel=2)
    return found


def find_set(root: str | Path, options: dict, per_class: int) -> Path | None:
    """The smallest complete set under `root` drawn with `options` (as `differing_option`
    compares them) and at least `per_class` images per class; None if there is none."""
    want = json.loads(json.dumps(options, default=str))  # as a record holds them: paths as text
    found = []
    for folder, record in set_records(root):
        if differing_option(record["options"], want) is None:
            n = complete_per_class(folder)
            if n >= per_class:
                found.append((n, str(folder)))
    return Path(min(found)[1]) if found else None


def complete_per_class(folder: str | Path) -> int:
    """N such that images 0..N-1 of every class are in the set's manifest (0 if none)."""
    rows = read_manifest(folder)
    if rows.empty:
        return 0
    index = rows["file_name"].map(lambda f: int(Path(f).stem))
    classes = len(read_options(folder)["class_names"])
    have = [set(index[rows["label"] == c]) for c in range(classes)]
    return min(next(i for i in itertools.count() if i not in s) for s in have)


def synthetic_subset(source: str | Path, per_class: int, out: str | Path) -> Path:
    """The first `per_class` images of each class of `source`, as a set of its own in `out`
    (hard links, or copies across file systems; its manifest and record filtered to them).

    This IS the set `generate_synthetic_set(..., per_class)` draws with the same options:
    generate.py seeds image i of class c with image_seed(run seed, c, i), names it
    `<class>/<i:05d>.png`, picks its prompt from that seed, and never depends on how many
    images per class are asked for. Pixels match up to the rounding of batching (generate.py
    documents at most 1/255 on a few values in 100,000); tests/test_experiments.py checks it.
    So a subset already in `out` is kept if it was cut from a set with the same options
    (`differing_option`), wherever that set lies now.
    Written to a temporary folder and renamed, so `out` is complete or absent.
    """
    source, out = Path(source), Path(out)
    record = read_record(source)
    if (out / _MANIFEST).exists():
        made = read_record(out)
        key = differing_option(made["options"], record["options"])
        if key is not None or "subset_of" not in made:
            why = (f"{key} {made['options'].get(key)!r}, not {record['options'][key]!r}"
                   if key is not None else "it is not a subset")
            raise ValueError(f"{str(out)!r} holds another set than the first images of "
                             f"{str(source)!r} ({why}); choose another folder")
        return out
    have = complete_per_class(source)
    if per_class > have:
        raise ValueError(f"per_class={per_class} is more than the {have} images per class of "
                         f"{str(source)!r}")
    rows = read_manifest(source)
    rows = rows[rows["file_name"].map(lambda f: int(Path(f).stem)) < per_class]
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name in rows["file_name"]:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / name, tmp / name)
        except OSError:
            shutil.copy2(source / name, tmp / name)
    record.setdefault("request", {})["per_class"] = per_class
    record["subset_of"] = {"path": str(source.resolve()), "per_class": have}
    record.get("result", {}).update(images=len(rows), generated=0)
    write_record(tmp, record)
    write_manifest(tmp, {(r["label"], int(Path(r["file_name"]).stem)): r
                         for r in rows.to_dict("records")})
    if (source / _CARD).exists():  # its dataset card: class names, no counts, so still true
        shutil.copy2(source / _CARD, tmp / _CARD)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def listed_classes(root: str | Path) -> dict[str, str] | None:
    """{class folder: class name} of the images a set's manifest lists (every row checked by
    read_manifest); None for a folder without a manifest (a plain ImageFolder)."""
    if not (Path(root) / _MANIFEST).exists():
        return None
    rows = read_manifest(root)
    return dict(zip(rows.file_name.str.split("/").str[0], rows.class_name))


def trained_on(folder: str | Path | None, per_class: int = 0) -> dict:
    """What a training run records about the synthetic set it trained on (the results store's
    columns): template, guidance, generation seed, the real images per class its DSI token was
    learned on (k at k shots), and `per_class`, the images per class the run loaded. `folder`
    None: no synthetic set. A folder without a record is an ImageFolder of your own used as a
    synthetic set (`--synthetic`): how it was drawn is unknown, so those facts are None."""
    record = read_record(folder, required=False) if folder is not None else None
    options = record["options"] if record else {}
    token = options.get("style_token") or {}
    return {"template": options.get("template"), "guidance": options.get("guidance_scale"),
            "gen_seed": options.get("seed"), "token_real_per_class": token.get("real_per_class"),
            "per_class": per_class}


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
    if not (out / _RECORD).exists():
        if any(p.name != LOCK_NAME for p in out.iterdir()):
            raise _not_a_set(out)
        return
    _refuse_links(out)  # a rerun writes into the class folders: never through a link
    old = read_options(out)
    key = differing_option(old, options)
    if key is not None:
        raise ValueError(f"{str(out)!r} holds a different synthetic set ({key}: "
                         f"{old.get(key)!r}, requested {options[key]!r}); pass overwrite=True "
                         f"(--overwrite) or choose another folder")


def _not_a_set(out: Path) -> ValueError:
    """A folder of files but no set's record: nothing in it is known to be `bridge generate`'s."""
    return ValueError(f"{str(out)!r} is not empty and holds no run.json of `bridge generate`, so "
                      f"nothing in it is known to be a synthetic set; overwrite=True "
                      f"(--overwrite) replaces only such a set: choose another folder")


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
    if not (out / _RECORD).exists() and not (out / _RECORD).is_symlink():
        if not any(p.name != LOCK_NAME for p in out.iterdir()):
            return []
        raise _not_a_set(out)
    names = read_options(out)["class_names"]
    folders = set(class_folders_of(names)) | set(legacy_class_folders(names))
    listed = set(read_manifest(out).file_name) if (out / _MANIFEST).exists() else set()
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
    write_record(out, run)
    write_card(out, run["options"], slugs)
    o = run["options"]
    done = _scan_folder(out, slugs, per_class, o["seed"], o["resolution"])
    write_manifest(out, done)  # drops bad and partial rows before new ones are appended
    for part in manifest_parts(out):  # an interrupted launch's rows, now in metadata.jsonl
        part.unlink()
    return done


def manifest_part(out: Path, rank: int | None) -> Path:
    """The manifest a process appends its rows to: the set's own (one process), or its rank's
    part, which rank 0 merges into the set's own when a launch ends."""
    return out / (_MANIFEST if rank is None else f"metadata.rank{rank}.jsonl")


@contextlib.contextmanager
def appending_rows(path: Path):
    """`append(row)`: add one image's row to a manifest (or a launch's part), flushed at once, so
    a row is on disk as soon as its image is; a crash leaves at most a partial last line, which
    manifest_rows skips. Appended in place: rewriting a manifest per image would cost its size."""
    with open(path, "a") as f:
        def append(row: dict) -> None:
            f.write(json.dumps({k: row[k] for k in COLUMNS}) + "\n")
            f.flush()
        yield append


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
    rows = manifest_rows(slugs, [out / _MANIFEST, *manifest_parts(out)])
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
    atomic_write_bytes(out / _MANIFEST, ("\n".join(rows) + "\n" if rows else "").encode())
