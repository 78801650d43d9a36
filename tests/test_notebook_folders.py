"""Notebooks keep the CLI's promise about folders (issue 29, item 7): a folder a reader names in
a parameter is never written with overwrite=True; only a notebook's own scratch folder is."""
import ast
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OWN = ("scratch", "own")  # the names a notebook gives its own folder and "is it ours?"


def overwrite_calls(path: Path):
    """(cell index, call source, overwrite value source) of every call passing overwrite=."""
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "overwrite":
                        yield i, ast.get_source_segment(src, node), ast.get_source_segment(src, kw.value)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_overwrite_only_in_the_notebooks_own_folder(path):
    for i, call, value in overwrite_calls(path):
        if value == "False":
            continue
        ok = value in OWN or (value == "True" and "scratch" in call.split(",", 1)[1])
        assert ok, (f"{path.name} cell {i}: {call!r} passes overwrite={value} to a folder that "
                    f"may be the reader's; pass overwrite=own, or write under `scratch`")


def test_the_rule_catches_a_named_folder(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": 'write_report(store, REPORT_DIR, overwrite=True)'}]}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match="may be the reader's"):
        test_overwrite_only_in_the_notebooks_own_folder(tmp_path / "x.ipynb")
