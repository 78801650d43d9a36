"""A synthetic set on disk has one home, bridgelib/manifest.py: no other module opens its record
(run.json) or its manifest (metadata.jsonl), a bad record is one error wherever it is met, and a
set is known by its generator's weights, not by where the generator or the set lie."""
import ast
import json
import re
import shutil
from pathlib import Path

import pytest

import bridgelib
from bridgelib import manifest
from bridgelib.config import get_config

PACKAGE = Path(bridgelib.__file__).parent
TOOLS = PACKAGE.parent / "tools"
# How code names one of a set's files: the name alone, or after a path separator or a glob
# ("run.json", "*/run.json", f"{out}/metadata.jsonl", f"metadata.rank{r}.jsonl"); prose such as
# a help string's "an ImageFolder + metadata.jsonl" is not a file name.
SET_FILE = re.compile(r"(?:^|[/*])(?:run\.json|metadata\.jsonl|metadata\.rank)")
CLASSES = ["digit one", "digit seven"]


def set_file_literals(path: Path) -> list[str]:
    """The string literals of a module (docstrings aside) that name a set's record or manifest."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [f"line {node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and SET_FILE.search(node.value)]


def test_only_manifest_names_a_sets_files():
    assert set_file_literals(PACKAGE / "manifest.py")  # the scan sees them where they are
    others = {str(p.relative_to(PACKAGE.parent)): found
              for p in sorted([*PACKAGE.rglob("*.py"), *TOOLS.glob("*.py")])
              if p != PACKAGE / "manifest.py" and (found := set_file_literals(p))}
    assert others == {}, f"read and write a synthetic set through bridgelib.manifest: {others}"


def test_only_manifest_uses_its_file_names():
    """manifest's private names of the files are not borrowed to open them elsewhere."""
    names = {"_RECORD", "_MANIFEST", "_CARD"}
    users = sorted(str(p) for p in PACKAGE.rglob("*.py") if p.name != "manifest.py"
                   and any(isinstance(n, (ast.Name, ast.Attribute, ast.alias))
                           and ({getattr(n, a, None) for a in ("id", "attr", "name")} & names)
                           for n in ast.walk(ast.parse(p.read_text()))))
    assert users == []


# ---- one error for a bad record, wherever it is read -----------------------------------------
def fake_set(root: Path, record: str | None) -> Path:
    """Two classes of one white 32 px image each, a manifest, and `record` as run.json."""
    from PIL import Image
    rows = []
    for label, (name, folder) in enumerate(zip(CLASSES, manifest.class_folders_of(CLASSES))):
        (root / folder).mkdir(parents=True)
        Image.new("RGB", (32, 32), "white").save(root / folder / "00000.png")
        rows.append(json.dumps({"file_name": f"{folder}/00000.png", "label": label,
                                "class_name": name}))
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    if record is not None:
        (root / "run.json").write_text(record)
    return root


BAD_RECORDS = {"not JSON": ('{"opt', "is not JSON"),
               "a list": ("[1, 2]", "is not a JSON object"),
               "options a string": ('{"options": "single"}', "has no options object"),
               "no class names": ('{"options": {"template": "single"}}',
                                  "has no list of class_names in its options")}


def readers(root: Path) -> dict:
    """Every place that reads a set's record, as a call on the set in `root`."""
    from bridgelib.folders import load_image_folder
    return {"complete_per_class": lambda: manifest.complete_per_class(root),
            "load_image_folder": lambda: load_image_folder(root, 32),
            "trained_on": lambda: manifest.trained_on(root, 1),
            "resume (check_folder)": lambda: manifest.check_folder(root, {"seed": 0}, False),
            "overwrite (own_files)": lambda: manifest.own_files(root),
            "synthetic_subset": lambda: manifest.synthetic_subset(root, 1, root.parent / "sub")}


@pytest.mark.parametrize("kind", BAD_RECORDS)
def test_a_bad_record_is_one_error_wherever_it_is_read(tmp_path, kind):
    text, problem = BAD_RECORDS[kind]
    root = fake_set(tmp_path / "syn", text)
    expected = (f"{str(root / 'run.json')!r} {problem}; expected the run.json that `bridge "
                f"generate` writes beside a synthetic set")
    for where, read in readers(root).items():
        with pytest.raises(ValueError) as err:
            read()
        assert str(err.value).startswith(expected) and "\n" not in str(err.value), where


def test_a_missing_record(tmp_path):
    """Required where the options are needed; a plain ImageFolder trains with unknown facts."""
    root = fake_set(tmp_path / "syn", None)
    with pytest.raises(FileNotFoundError, match=r"run.json' does not exist; expected the run"):
        manifest.complete_per_class(root)
    assert manifest.trained_on(root, 3) == {"template": None, "guidance": None, "gen_seed": None,
                                            "token_real_per_class": None,
                                            "per_class": 3}


def test_the_cache_lookup_warns_of_a_bad_record_and_uses_the_others(tmp_path):
    good = fake_set(tmp_path / "cache" / "good", json.dumps({"options": {"class_names": CLASSES,
                                                                         "seed": 0}}))
    bad = fake_set(tmp_path / "cache" / "bad", "[1, 2]")
    with pytest.warns(UserWarning, match=re.escape(f"{str(bad / 'run.json')!r} is not a JSON")):
        assert manifest.find_set(tmp_path / "cache", {"seed": 0}, 1) == good


# ---- a set is known by its generator's weights, not its path ---------------------------------
def test_which_options_tell_two_sets_apart():
    local = {"model": "/a/mini-generator", "model_fingerprint": "8c55e456", "seed": 0}
    assert manifest.differing_option(local, {**local, "model": "/b/mini-generator"}) is None
    assert manifest.differing_option(local, {**local, "model_fingerprint": "0f0f"}) == \
        "model_fingerprint"  # rebuilt weights in the same folder: another set
    assert manifest.differing_option(local, {**local, "seed": 1}) == "seed"
    before_fingerprints = {"model": "/a/mini-generator", "seed": 0}
    assert manifest.differing_option(before_fingerprints, local) == "model_fingerprint"
    hub = {"model": "org/sd-v1-5", "model_fingerprint": None}
    assert manifest.differing_option(hub, {**hub, "model": "org/other"}) == "model"


def test_a_cached_set_is_found_after_the_repository_moves(tiny_model, tmp_path, monkeypatch):
    """The cache and the generator under one folder (the repository's data/ and cache/), then
    that folder moved: the set is found, resumed without drawing and its subsets kept."""
    import bridgelib.generate as gen
    from bridgelib.experiments import find_synthetic_set
    from bridgelib.pipeline import load_pipeline

    def in_repo(repo: Path):
        return get_config("mini", **{"generation.model": str(repo / "generator"),
                                     "generation.steps": 1}), repo / "cache"
    shutil.copytree(tiny_model, tmp_path / "a" / "generator")
    cfg, cache = in_repo(tmp_path / "a")
    pipe = load_pipeline(cfg)
    made = gen.cached_synthetic_set(cfg, 2, pipe=pipe, root=cache)
    sub = manifest.synthetic_subset(made, 1, tmp_path / "a" / "subsets" / "sub")
    files = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in made.rglob("*.png")}

    (tmp_path / "a").rename(tmp_path / "b")
    cfg, cache = in_repo(tmp_path / "b")
    moved = cache / made.name
    assert find_synthetic_set(cfg, 2, cfg.generation.template, cfg.generation.guidance,
                              root=cache) == moved
    moved_sub = tmp_path / "b" / "subsets" / "sub"
    assert manifest.synthetic_subset(moved, 1, moved_sub) == moved_sub  # kept, not refused

    def draw_nothing(pipe, out, work, *args):
        assert work == [], "a moved set was drawn again"
        return {}
    monkeypatch.setattr(gen, "_draw_all", draw_nothing)
    assert gen.cached_synthetic_set(cfg, 2, pipe=pipe, root=cache) == moved
    assert {p.relative_to(tmp_path / "b"): p.read_bytes() for p in moved.rglob("*.png")} == files
    assert manifest.read_options(moved)["model"] == str(tmp_path / "b" / "generator")
