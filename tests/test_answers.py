"""docs/answers.md answers every exercise of every notebook, and its numbers are the shipped
store's (tools/answers.py renders them)."""
import importlib.util
import json
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def exercises(path: Path) -> int:
    """How many numbered exercises follow the notebook's **Exercises** heading."""
    for cell in json.loads(path.read_text())["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown" and "**Exercises**" in text:
            return len(re.findall(r"^\d+\. ", text.split("**Exercises**", 1)[1], re.M))
    return 0


def test_every_exercise_has_an_answer():
    answers = (REPO_ROOT / "docs" / "answers.md").read_text()
    sections = dict(re.findall(r"^## (\d\d) · [^\n]*\n(.*?)(?=^## |\Z)", answers, re.M | re.S))
    for path in NOTEBOOKS:
        n = exercises(path)
        assert n, f"{path.name} has no exercises"
        given = len(re.findall(r"^\d+\. \*\*", sections.get(path.name[:2], ""), re.M))
        assert given == n, f"{path.name}: {n} exercises, {given} answers in docs/answers.md"


def test_answers_are_the_shipped_stores():
    spec = importlib.util.spec_from_file_location("answers", REPO_ROOT / "tools" / "answers.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert (REPO_ROOT / "docs" / "answers.md").read_text() == tool.render(), \
        "docs/answers.md is stale: run python tools/answers.py"
