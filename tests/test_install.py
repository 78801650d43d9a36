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


def test_the_lock_pins_every_declared_dependency_within_its_bounds():
    """requirements.lock (what `make install` installs) holds one exact pin for each dependency
    pyproject.toml declares, dev extras included, and each pin is a version pyproject allows:
    a bound raised or a dependency added without `make lock` fails here."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    root = Path(bridgelib.__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in
                project["dependencies"] + project["optional-dependencies"]["dev"]]
    pins = {}
    for line in (root / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not in requirements.lock (make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, outside {req} (make lock)"
    assert pins["torch"] == "2.14.1" and "bridgelib" not in pins
