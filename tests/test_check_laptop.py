"""`make check` (tools/check_laptop.py) says in one line what is wrong with a laptop: here the
failure paths, which take seconds (the passing run, about 30 s on 2 cores, is measured in
docs/workshop.md and is not repeated in the test suite)."""
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / "tools" / "check_laptop.py"


def check(*args, **kw):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT, **kw)


def test_missing_world_files_fail_in_one_line(tmp_path):
    shutil.copytree(REPO_ROOT / "data" / "fashion-mnist", tmp_path / "fashion-mnist")
    done = check("--only", "world", "--data-dir", str(tmp_path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("FAIL world: ")
    assert "missing under" in lines[0] and "mini-backbone/manifest.json" in lines[0]
    assert lines[1].startswith("NOT ready: 1 of 1 checks failed (world)")
    assert "Traceback" not in done.stdout + done.stderr


def test_an_empty_world_file_is_named(tmp_path):
    spec = importlib.util.spec_from_file_location("check_laptop", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for name in tool.WORLD_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "mini-world.json").write_bytes(b"")
    done = check("--only", "world", "--data-dir", str(tmp_path))
    assert done.returncode == 1 and "mini-world.json is empty" in done.stdout.splitlines()[0]


def test_make_check_without_a_venv_says_so(tmp_path):
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    done = subprocess.run([make, "-s", "-C", str(REPO_ROOT), f"VENV={tmp_path / 'none'}", "check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stdout.strip().splitlines()[0].startswith("FAIL install: no ")
