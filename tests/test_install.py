"""A copy of the package installed without its repository (what `pip install .` makes: the code
in site-packages, no data/, no pyproject.toml) refuses in one line and writes nothing there."""
import shutil
import subprocess
import sys
from pathlib import Path

import bridgelib


def test_an_installed_copy_without_its_repository_refuses_in_one_line(tmp_path):
    site = tmp_path / "site-packages"
    shutil.copytree(Path(bridgelib.__file__).parent, site / "bridgelib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.relative_to(site) for p in site.rglob("*"))

    def bridge(*args):
        code = f"import sys; sys.path.insert(0, {str(site)!r}); from bridgelib.cli import main; " \
               f"sys.exit(main({list(args)!r}))"
        return subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)

    assert bridge("--help").returncode == 0  # the command itself answers
    done = bridge("train", "--recipe", "vanilla", "--shots", "1", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "runs from a clone of its repository" in line and "git clone" in line
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before  # nothing written there
    assert not (tmp_path / "run").exists()
