"""A training run keeps its fine-tuned classifier in timm's own `save_for_hf` layout
(RUN/classifier: config.json + model.safetensors): plain timm loads it with
`create_model("local-dir:RUN/classifier", pretrained=True)` (strict loading) and predicts exactly
what the run's own evaluation scored. Classifiers written the old way stay readable."""
import hashlib
import json

import pytest
import timm
import torch
from safetensors.torch import save_file

import bridgelib.cli as cli
from bridgelib.config import get_config
from bridgelib.datasets import load_dataset
from bridgelib.models import (CLASSIFIER_DIR, LEGACY_CLASSIFIER_CONFIG, LEGACY_CLASSIFIER_FILE,
                              load_classifier, save_classifier)
from bridgelib.transfer import train_run

TINY = {"train.real.epochs": 1, "train.real.min_steps": 4, "train.real.batch_size": 32}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "vanilla-k4-s0"
    metrics = train_run(get_config("mini", **TINY), "vanilla", out, shots=4, seed=0)
    return out, metrics


def plain_predict(model, images, batch_size=512):
    """Predictions with nothing but torch and the model's own pretrained_cfg (as a user would)."""
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.cat([model((images[i:i + batch_size].float() / 255 - mean) / std).argmax(1)
                          for i in range(0, len(images), batch_size)])


def test_plain_timm_loads_the_classifier_and_predicts_as_the_run_did(run):
    out, metrics = run
    assert sorted(p.name for p in (out / CLASSIFIER_DIR).iterdir()) == ["config.json",
                                                                         "model.safetensors"]
    # timm's own loader, strict: a missing or extra key would raise
    model = timm.create_model(f"local-dir:{out / CLASSIFIER_DIR}", pretrained=True).eval()
    test = load_dataset(get_config("mini"), "test")
    assert model.pretrained_cfg["label_names"] == test.class_names
    assert tuple(model.pretrained_cfg["input_size"]) == (3, *test.images.shape[-2:])
    pred = plain_predict(model, test.images)
    hit = (pred == test.labels).float()
    assert hit.mean().item() == metrics["test_acc"]  # exactly the run's evaluation
    assert {n: hit[test.labels == c].mean().item() for c, n in enumerate(test.class_names)} \
        == metrics["per_class_accuracy"]
    assert metrics["test_acc"] > 1.5 / len(test.class_names)  # trained weights, not a fresh head


def test_the_config_is_timms_with_the_runs_input_and_checksum(run):
    out, _ = run
    config = json.loads((out / CLASSIFIER_DIR / "config.json").read_text())
    weights = (out / CLASSIFIER_DIR / "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == config["weights_sha256"]
    assert config["architecture"] == "resnet10t" and config["num_classes"] == 10
    assert config["model_args"]["channels"] == [32, 64, 128, 256]
    pc = config["pretrained_cfg"]
    assert pc["input_size"] == [3, 32, 32] and len(pc["mean"]) == len(pc["std"]) == 3
    # the mini backbone is not timm's resnet10t.c3_in1k: nothing of that checkpoint is claimed
    assert not {"tag", "hf_hub_id", "url", "test_input_size", "license"} & set(pc)


def test_a_classifier_saved_the_old_way_still_loads(run, tmp_path):
    """Runs written before the timm layout kept classifier.safetensors + classifier.json."""
    model = load_classifier(run[0])
    old = tmp_path / "old-run"
    old.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, old / LEGACY_CLASSIFIER_FILE)
    pc = model.pretrained_cfg
    (old / LEGACY_CLASSIFIER_CONFIG).write_text(json.dumps({
        "architecture": "resnet10t", "num_classes": 10, "label_names": pc["label_names"],
        "model_args": {"channels": [32, 64, 128, 256]},
        "pretrained_cfg": {"input_size": [3, 32, 32], "mean": list(pc["mean"]),
                           "std": list(pc["std"]), "classifier": "fc"}}))
    images = load_dataset(get_config("mini"), "test").images[:500]
    legacy = load_classifier(old)
    assert legacy.pretrained_cfg["label_names"] == pc["label_names"]
    assert torch.equal(plain_predict(legacy, images), plain_predict(model, images))
    with pytest.raises(FileNotFoundError, match="holds no saved classifier.*classifier/config.json"):
        load_classifier(tmp_path)


def test_a_foreign_file_in_the_classifier_folder_is_never_replaced(run, tmp_path):
    out, _ = run
    dest = tmp_path / "run"
    (dest / CLASSIFIER_DIR).mkdir(parents=True)
    (dest / CLASSIFIER_DIR / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        save_classifier(load_classifier(out), get_config("mini"), ["a"] * 10, dest)
    assert (dest / CLASSIFIER_DIR / "notes.txt").read_text() == "mine"


def test_no_save_model_keeps_only_the_run_files(tmp_path):
    out = tmp_path / "run"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    assert cli.main(["train", "--recipe", "vanilla", "--shots", "1", "--out", str(out),
                     "--no-save-model", *sets]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "metrics.json"]


def test_a_killed_run_leaving_its_classifier_is_not_refused(run, tmp_path):
    """The classifier is written before metrics.json: a run killed between them reruns, and the
    rerun replaces the classifier it left."""
    import shutil
    out = tmp_path / "killed"
    out.mkdir()
    shutil.copytree(run[0] / CLASSIFIER_DIR, out / CLASSIFIER_DIR)
    (out / "config.json").write_bytes((run[0] / "config.json").read_bytes())
    (out / ".classifier.x1.tmp").mkdir()  # a temp folder of a save killed midway
    (out / LEGACY_CLASSIFIER_FILE).write_bytes(b"an older version's classifier")
    before = (out / CLASSIFIER_DIR / "model.safetensors").read_bytes()
    train_run(get_config("mini", **TINY), "vanilla", out, shots=1, seed=0)
    assert (out / "metrics.json").exists()
    assert (out / CLASSIFIER_DIR / "model.safetensors").read_bytes() != before  # replaced
    assert not (out / LEGACY_CLASSIFIER_FILE).exists()  # one classifier per run, not two
