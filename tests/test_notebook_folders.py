"""Notebooks keep the CLI's promise about folders (issue 29, item 7): a folder a reader names in
a parameter is never written with overwrite=True; only a notebook's own scratch folder is."""
import ast
import json
import os
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


def _tree(root: Path) -> dict:
    """Every file and link under `root`: its bytes' hash, or where the link points."""
    import hashlib
    return {str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else
                                       hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_symlink() or p.is_file()}


def test_notebook_06_under_papermill_changes_nothing_in_a_named_report_folder(tmp_path):
    # A reader's own report folder, with files named like the report's and a link named like a
    # figure that points outside it: executed with REPORT_DIR set to it, the notebook may refuse
    # (it does: the folder holds a report) but nothing there, or behind the link, may change.
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    mine, outside = tmp_path / "mine", tmp_path / "outside"
    mine.mkdir()
    outside.mkdir()
    (mine / "report.md").write_text("my notes\n")
    (mine / "claims.md").write_text("my claims\n")
    (outside / "photo.png").write_bytes(b"\x89PNG not a figure of the course")
    (mine / "claims_forest.png").symlink_to(outside / "photo.png")
    before = _tree(tmp_path)
    notebook = REPO_ROOT / "notebooks" / "06_reproducing_the_paper.ipynb"
    try:
        pm.execute_notebook(str(notebook), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                            parameters={"REPORT_DIR": str(mine)}, cwd=str(notebook.parent),
                            progress_bar=False, execution_timeout=300)
    except PapermillExecutionError as err:  # a refusal must be the one-line kind, not a crash
        assert "REPORT_DIR" in str(err) or str(mine) in str(err), err
    after = {k: v for k, v in _tree(tmp_path).items() if k != "executed.ipynb"}
    assert after == before
