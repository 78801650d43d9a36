"""The executed pages hold no library warning, no shots in text order, no internal field name
(tools/check_pages.py): on made-up pages always, on `make course`'s pages when they exist."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_pages", REPO_ROOT / "tools" / "check_pages.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def page(*outputs):
    return {"cells": [{"cell_type": "code", "outputs": list(outputs)}]}


def test_each_kind_of_problem_is_found():
    warn = {"output_type": "stream", "name": "stderr",
            "text": "/x/site-packages/scipy/linalg/_m.py:3: LinAlgWarning: Ill-conditioned\n"}
    own = {"output_type": "stream", "name": "stderr",
           "text": "/r/bridgelib/folders.py:9: UserWarning: skipped cat.jpg\n"}
    table = {"output_type": "execute_result", "data": {"text/plain": "shots  1  16  2  4  8  full\n"}}
    field = {"output_type": "stream", "name": "stdout", "text": "at fixed_steps=0, scratch=False\n"}
    ok = {"output_type": "execute_result", "data": {"text/plain": "shots  1  2  4  8  16  full\n"}}
    log = {"output_type": "stream", "name": "stderr",
           "text": "findfont: Font family ['STIXGeneral'] not found. Falling back to DejaVu Sans.\n"}
    problems = tool.page_problems(page(warn, own, table, field, ok, log), "nb")
    assert len(problems) == 4, problems
    assert "LinAlgWarning" in problems[0] and "text order" in problems[1] and "fixed_steps=" in problems[2]
    assert "stderr: findfont" in problems[3]


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "outputs" / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.name)
def test_make_course_pages(path):
    assert tool.page_problems(json.loads(path.read_text()), path.name) == []
