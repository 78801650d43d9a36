"""A training run keeps its fine-tuned classifier in timm's convention: plain timm rebuilds it,
takes the weights with strict=True and scores what the run scored."""
import json

import pytest
import timm
import torch
from safetensors.torch import load_file

import bridgelib.cli as cli
from bridgelib.config import get_config
from bridgelib.datasets import load_dataset
from bridgelib.models import CLASSIFIER_CONFIG, CLASSIFIER_FILE
from bridgelib.transfer import train_run

TINY = {"train.real.epochs": 1, "train.real.min_steps": 4, "train.real.batch_size": 32}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "vanilla-k4-s0"
    metrics = train_run(get_config("mini", **TINY), "vanilla", out, shots=4, seed=0)
    return out, metrics


def test_plain_timm_reloads_the_classifier_and_scores_the_same(run):
    out, metrics = run
    meta = json.loads((out / CLASSIFIER_CONFIG).read_text())
    model = timm.create_model(meta["architecture"], num_classes=meta["num_classes"],
                              **meta["model_args"])
    model.load_state_dict(load_file(out / CLASSIFIER_FILE), strict=True)  # every key, no extra
    model.eval()
    test = load_dataset(get_config("mini"), "test")
    assert meta["label_names"] == test.class_names
    assert meta["pretrained_cfg"]["input_size"] == [3, *test.images.shape[-2:]]
    mean = torch.tensor(meta["pretrained_cfg"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["pretrained_cfg"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = torch.cat([model((test.images[i:i + 1000].float() / 255 - mean) / std).argmax(1)
                          for i in range(0, len(test), 1000)])
    accuracy = (pred == test.labels).float().mean().item()
    assert accuracy == pytest.approx(metrics["test_acc"], abs=1 / len(test))  # same images right
    assert accuracy > 1.5 / meta["num_classes"]  # trained weights, not a fresh head


def test_the_weights_match_their_recorded_checksum(run):
    import hashlib
    out, _ = run
    meta = json.loads((out / CLASSIFIER_CONFIG).read_text())
    assert hashlib.sha256((out / CLASSIFIER_FILE).read_bytes()).hexdigest() == meta["weights_sha256"]


def test_no_save_model_keeps_only_the_run_files(tmp_path):
    out = tmp_path / "run"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    assert cli.main(["train", "--recipe", "vanilla", "--shots", "1", "--out", str(out),
                     "--no-save-model", *sets]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "metrics.json"]


def test_a_killed_run_leaving_its_classifier_is_not_refused(run, tmp_path):
    """The classifier is written before metrics.json: a run killed between them reruns."""
    out = tmp_path / "killed"
    out.mkdir()
    for name in (CLASSIFIER_FILE, CLASSIFIER_CONFIG, "config.json"):
        (out / name).write_bytes((run[0] / name).read_bytes())
    train_run(get_config("mini", **TINY), "vanilla", out, shots=1, seed=0)
    assert (out / "metrics.json").exists()
