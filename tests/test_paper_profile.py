"""The paper profile's code path, on a tiny local stand-in: a random-weight timm resnet18 and a
small on-disk ImageFolder (no downloads), for every recipe."""
import json

import numpy as np
import pytest
from PIL import Image

from bridgelib.config import get_config
from bridgelib.transfer import RECIPES, train_run

CLASSES = ("cat", "dog", "fox")


def write_folder(root, per_class, seed):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8) + np.uint8(80 * c)
            Image.fromarray(img).save(root / name / f"{i}.png")


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    write_folder(root / "data" / "train", 4, 0)
    write_folder(root / "data" / "test", 2, 1)
    write_folder(root / "synthetic", 3, 2)
    cfg = get_config("paper", dataset="imagefolder", data_root=str(root / "data"), image_size=32,
                     device="cpu", **{"train.real.epochs": 1, "train.real.batch_size": 4,
                                      "train.synthetic.epochs": 1, "train.synthetic.batch_size": 4})
    return cfg, root


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_runs_in_the_paper_profile(recipe, stand_in, tmp_path):
    cfg, root = stand_in
    metrics = train_run(cfg, recipe, tmp_path / "run", shots=2, seed=0, pretrained=False,
                        synthetic_dir=None if recipe == "vanilla" else root / "synthetic")
    assert 0 <= metrics["test_acc"] <= 1 and metrics["train_images"] == 2 * len(CLASSES)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["profile"] == "paper" and saved["backbone"] == "resnet18"
    stages = [s["stage"] for s in metrics["stages"]]
    assert stages == {"vanilla": ["real"], "mixed": ["mixed"]}.get(recipe, ["synthetic", "real"])
