"""Bring your own dataset to the mini profile, honestly: the generator says which classes it was
never shown, a test split too small to compare recipes is named, a real/synthetic look gap is
named, and the report is titled with your folder."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import bridgelib.cli as cli
from bridgelib.data import ImageSet
from bridgelib.folders import warn_polarity_gap, warn_small_test_split

SETS = [a for k, v in {"train.real.epochs": 1, "train.real.min_steps": 2,
                       "train.real.batch_size": 8}.items() for a in ("--set", f"{k}={v}")]


def folder(root, classes, train=4, test=2):
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


def bridge(*args) -> str:
    """Run the real command in its own process (pytest would catch the warnings in this one);
    return its stderr."""
    done = subprocess.run([sys.executable, "-m", "bridgelib", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("bridge: warning:")]


def test_classes_the_mini_generator_never_saw_get_one_warning_line(tmp_path):
    data = folder(tmp_path / "my_instruments", ["violin", "tulip", "canoe"])
    err = bridge("generate", "--dataset", str(data), "--per-class", "1", "--steps", "1",
                 "--out", str(tmp_path / "set"))
    (line,) = [w for w in warning_lines(err) if "never shown" in w]
    assert "'canoe', 'tulip', 'violin'" in line and "--profile workshop" in line  # label order


def test_classes_it_knows_get_no_warning(tmp_path, recwarn):
    data = folder(tmp_path / "my_clothes", ["bag", "dress", "ankle_boot"])
    assert cli.main(["generate", "--dataset", str(data), "--per-class", "1", "--steps", "1",
                     "--out", str(tmp_path / "set")]) == 0
    assert not [w for w in recwarn if "never shown" in str(w.message)]


def test_a_tiny_test_split_is_named_and_the_report_is_titled_with_the_folder(tmp_path):
    data = folder(tmp_path / "my_instruments", ["violin", "tulip"], train=4, test=3)
    runs = tmp_path / "runs"
    err = bridge("train", "--dataset", str(data), "--recipe", "vanilla", "--shots", "full",
                 "--out", str(runs / "vanilla"), "--no-save-model", *SETS)
    (line,) = [w for w in warning_lines(err) if "test split" in w]
    assert "my_instruments: the test split has 6 images" in line and "6,400" in line
    assert cli.main(["report", "--runs", str(runs), "--out", str(tmp_path / "report")]) == 0
    title = (tmp_path / "report" / "report.md").read_text().splitlines()[0]
    assert "dataset: my_instruments" in title and "Fashion-MNIST" not in title


def images(background: int, n: int = 6) -> ImageSet:
    x = torch.full((n, 3, 16, 16), background, dtype=torch.uint8)
    x[:, :, 6:10, 6:10] = 255 - background  # an object in the other tone
    return ImageSet(x, torch.arange(n) % 2, ["a", "b"])


def test_light_on_dark_against_dark_on_light_is_named():
    with pytest.warns(UserWarning, match=r"synthetic images have light backgrounds .* real ones dark"):
        assert warn_polarity_gap(images(10), images(240), "mine")


def test_the_same_look_is_not_a_gap():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_polarity_gap(images(10), images(60), "mine")
        assert not warn_small_test_split(images(10, n=1000), "mine")
