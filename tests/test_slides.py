"""`make slides` (tools/make_slides.py): each deck holds a title slide and the outputs of the
cells tagged for it, in course order; without executed notebooks it says so in one line."""
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_slides", REPO_ROOT / "tools" / "make_slides.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def executed(folder: Path, name: str, tag: str, text: str, output: bool = True):
    cell = nbformat.v4.new_code_cell("print('x')", metadata={"tags": [tag]})
    if output:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1"), cell])
    nbformat.write(nb, folder / name)


def test_decks_hold_the_tagged_outputs_in_course_order(tmp_path):
    for name, tag, text in (("06_b.ipynb", "slides-debrief", "forest plot here"),
                            ("01_a.ipynb", "slides-opening", "vanilla by shots"),
                            ("03_c.ipynb", "slides-debrief", "recipes minus vanilla")):
        executed(tmp_path, name, tag, text)
    tool.build(tmp_path, tmp_path / "slides")
    debrief = json.loads((tmp_path / "slides" / "debrief.ipynb").read_text())
    outs = ["".join(c["outputs"][0]["text"]) for c in debrief["cells"][1:]]
    assert outs == ["recipes minus vanilla", "forest plot here"]
    html = (tmp_path / "slides" / "opening.slides.html").read_text()
    assert "reveal" in html.lower() and "vanilla by shots" in html and "print(" not in html
    assert (tmp_path / "slides" / "debrief.html").is_file()


def test_an_unexecuted_notebook_is_refused_in_one_line(tmp_path):
    executed(tmp_path, "01_a.ipynb", "slides-opening", "", output=False)
    with pytest.raises(RuntimeError, match="run make course"):
        tool.build(tmp_path, tmp_path / "slides")
    assert tool.main(["--executed", str(tmp_path / "none")]) == 1


def test_the_course_notebooks_tag_both_decks():
    tags = [t for p in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
            for c in json.loads(p.read_text())["cells"] for t in c["metadata"].get("tags", [])]
    assert tags.count("slides-opening") >= 3 and tags.count("slides-debrief") >= 4
