"""The paper profile's code path, on a tiny local stand-in: a random-weight timm resnet18 and a
small on-disk ImageFolder (no downloads), for every recipe."""
import json

import pytest

from bridgelib.config import get_config
from bridgelib.transfer import RECIPES, train_run
from cli_helpers import write_folder

CLASSES = ("cat", "dog", "fox")


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
    real_images = 0 if recipe == "synthetic-only" else 2 * len(CLASSES)  # it sees no real image
    assert 0 <= metrics["test_acc"] <= 1 and metrics["train_images"] == real_images
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["profile"] == "paper" and saved["backbone"] == "resnet18.tv_in1k"
    # the pinned torchvision weights, by timm tag (a bare "resnet18" resolves to a1_in1k)
    assert metrics["weights"]["architecture"] == "resnet18"
    assert metrics["weights"]["tag"] == "tv_in1k"
    stages = [s["stage"] for s in metrics["stages"]]
    assert stages == {"vanilla": ["real"], "mixed": ["mixed"],
                      "synthetic-only": ["synthetic"]}.get(recipe, ["synthetic", "real"])


def test_paper_chain_check_invert_generate_train_on_a_stand_in_pipeline(stand_in, tiny_model,
                                                                        tmp_path):
    """The paper profile's own generation and DSI settings (DPM-Solver++, its guidance, the DSI
    template, checkpoints) drive a random tiny SD pipeline through notebook 07's order on a
    folder of "your" classes: invert, generate with the token, train bridged++ on the set."""
    from bridgelib.datasets import load_dataset
    from bridgelib.folders import check_image_folder
    from bridgelib.generate import generate_synthetic_set
    from bridgelib.manifest import read_manifest
    from bridgelib.invert import learn_style_token
    _, root = stand_in
    cfg = get_config("paper", dataset="imagefolder", data_root=str(root / "data"), image_size=32,
                     device="cpu", **{"generation.model": str(tiny_model),
                                      "generation.resolution": 32, "generation.steps": 2,
                                      "invert.steps": 2, "invert.batch_size": 2,
                                      "invert.checkpoint_every": 1, "train.real.epochs": 1,
                                      "train.synthetic.epochs": 1, "train.real.batch_size": 4,
                                      "train.synthetic.batch_size": 4})
    assert check_image_folder(root / "data").classes == list(CLASSES)
    real = load_dataset(cfg, "train", "full", 0, size=cfg.generation.resolution)
    assert real.class_names == list(CLASSES)
    token = tmp_path / "token" / "learned_embeds.safetensors"
    record = learn_style_token(cfg, real, token, progress_bar=False)
    assert record["steps"] == 2 and token.exists()

    out = generate_synthetic_set(cfg, tmp_path / "set", 2, class_names=real.class_names,
                                 style_token=token, progress_bar=False)
    rows = read_manifest(out)
    assert len(rows) == 2 * len(CLASSES) and sorted(set(rows.class_name)) == sorted(CLASSES)
    assert rows.prompt.str.contains(cfg.invert.token, regex=False).all()
    assert (rows.guidance_scale == cfg.generation.guidance).all()
    assert (rows.scheduler == "DPMSolverMultistepScheduler").all()

    metrics = train_run(cfg, "bridged++", tmp_path / "run", shots=2, seed=0, pretrained=False,
                        synthetic_dir=out)
    assert metrics["synthetic_images"] == 2 * len(CLASSES) and 0 <= metrics["test_acc"] <= 1


def test_a_hub_generator_offline_says_what_it_would_fetch_and_how_to_use_a_copy(monkeypatch):
    from bridgelib.models import WeightsError
    from bridgelib.pipeline import load_pipeline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        load_pipeline(get_config("paper", device="cpu"))
    message = str(err.value)
    assert "\n" not in message and "'stable-diffusion-v1-5/stable-diffusion-v1-5'" in message
    assert "about 4 GB in fp32" in message and "--set generation.model=DIR" in message
