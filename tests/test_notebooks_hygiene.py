"""Course notebooks are committed clean and follow the course's conventions (docs/design.md)."""
import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("_"))
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
PROFILE_LINE = re.compile(r'^PROFILE = "mini"(\s*#.*)?$', re.MULTILINE)
each_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def test_notebooks_folder_exists():
    assert NOTEBOOK_DIR.is_dir()


def test_numbers_are_unique():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"repeated numbers: {sorted(numbers)}"


@each_notebook
def test_name(path):
    assert NAME.match(path.name), f"{path.name}: expected NN_snake_case.ipynb"


@each_notebook
def test_committed_without_outputs(path):
    dirty = [i for i, c in enumerate(load(path)["cells"])
             if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"cells {dirty} have outputs or counts: run `make strip`"


@each_notebook
def test_one_parameters_cell_of_literals(path):
    cells = [c for c in load(path)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged 'parameters', found {len(cells)}"
    assert cells[0]["cell_type"] == "code"
    src = source(cells[0])
    assert PROFILE_LINE.search(src), 'the parameters cell needs `PROFILE = "mini"`'
    for stmt in ast.parse(src).body:  # derived values go stale under papermill: literals only
        line = ast.get_source_segment(src, stmt)
        assert isinstance(stmt, ast.Assign), f"{line!r}: only `NAME = literal` here"
        try:
            ast.literal_eval(stmt.value)
        except ValueError:
            pytest.fail(f"{line!r}: not a literal; compute derived values in the next cell")


@each_notebook
def test_kernelspec_is_python3(path):
    assert load(path)["metadata"].get("kernelspec", {}).get("name") == "python3"


@each_notebook
def test_first_cell_is_the_numbered_title(path):
    first = load(path)["cells"][0]
    assert first["cell_type"] == "markdown"
    assert source(first).startswith(f"# {path.name[:2]} ·"), f"expected '# {path.name[:2]} · Title'"
