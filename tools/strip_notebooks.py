"""Remove outputs and execution counts from notebooks, so they are committed clean.

    python tools/strip_notebooks.py [--check] [NOTEBOOK ...]    (default: notebooks/*.ipynb)

Cell outputs go, every `execution_count` becomes null, and the run records that papermill and
JupyterLab leave behind (cell `execution`/`papermill` metadata, notebook `papermill`/`widgets`
metadata) are dropped. All other metadata, `kernelspec` included, is kept. A notebook is written
only when something changed. `--check` writes nothing and exits 1 if any notebook needs stripping.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
CELL_RUN_KEYS = ("execution", "papermill")
NOTEBOOK_RUN_KEYS = ("papermill", "widgets")


def strip(nb: nbformat.NotebookNode) -> None:
    """Strip one notebook in place."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in CELL_RUN_KEYS:
            cell.metadata.pop(key, None)
    for key in NOTEBOOK_RUN_KEYS:
        nb.metadata.pop(key, None)


def strip_file(path: Path, check: bool = False) -> bool:
    """Strip `path`; True if it needed it (and, unless `check`, was rewritten)."""
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    before = copy.deepcopy(nb)
    strip(nb)
    if nb == before:
        return False
    if not check:
        tmp = path.with_name(f".{path.name}.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to strip (default: every notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any notebook has outputs or counts")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
    changed = [p for p in paths if strip_file(p, check=args.check)]
    for p in changed:
        print(f"{'needs stripping' if args.check else 'stripped'}: {p}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
