"""The Makefile builds .venv with the first Python 3.11+ it finds, and says so in one line when
there is none (a `make -n` dry run and a refused build in a PATH of stand-in interpreters)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def fake_pythons(folder: Path, good: list[str], old: list[str]) -> dict:
    """A PATH holding only `good` (this interpreter) and `old` (one that says it is 3.10)."""
    folder.mkdir()
    for name in good:
        (folder / name).symlink_to(sys.executable)
    for name in old:
        (folder / name).write_text('#!/bin/sh\n[ "$1" = -V ] && echo "Python 3.10.12"\nexit 1\n')
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": str(folder)}


def make_venv(tmp_path, env, *args, dry_run=False):
    venv = tmp_path / "venv"
    cmd = [MAKE, "-s", *(["-n"] if dry_run else []), "-C", str(REPO_ROOT), f"VENV={venv}",
           *args, f"{venv}/bin/python"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_first_python_that_is_311_or_newer(tmp_path):
    env = fake_pythons(tmp_path / "bin", good=["python3.12", "python3"], old=["python3.13"])
    run = make_venv(tmp_path, env, dry_run=True)
    assert run.returncode == 0, run.stderr
    assert 'py="python3.12"' in run.stdout


def test_no_python_is_one_line(tmp_path):
    env = fake_pythons(tmp_path / "bin", good=[], old=["python3.13", "python3"])
    run = make_venv(tmp_path, env)
    assert run.returncode != 0
    assert "error: no Python 3.11 or newer on PATH" in run.stderr
    assert not (tmp_path / "venv").exists()


def test_a_named_python_that_is_too_old_is_refused(tmp_path):
    env = fake_pythons(tmp_path / "bin", good=["python3"], old=["python3.10"])
    run = make_venv(tmp_path, env, "PYTHON=python3.10")
    assert run.returncode != 0
    assert "error: PYTHON=python3.10 is Python 3.10.12, not Python 3.11 or newer" in run.stderr
