"""Transfer recipes (paper, Table 1): stage plans, Mixup placement, head reset, runs on disk."""
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bridgelib import models, transfer
from bridgelib.config import get_config, load_config
from bridgelib.data import ImageSet, crop_boxes
from bridgelib.datasets import load_dataset
from bridgelib.mini.fashion import load_mini_part
from bridgelib.models import create_classifier, head_parameters
from bridgelib.transfer import (RECIPES, Stage, augment, evaluate, plan_stages, run_recipe,
                                stage_steps, train_run, train_stage)

TINY = {"train.real.epochs": 2, "train.real.min_steps": 2, "train.real.batch_size": 32,
        "train.synthetic.epochs": 1, "train.synthetic.batch_size": 8}
TWO_STAGE = ("bridged", "bridged-reinit", "bridged++")
HISTORY_COLUMNS = ["stage", "epoch", "train_loss", "train_acc", "test_acc", "images_seen", "wall_s"]
METRICS_KEYS = {"test_acc", "per_class_accuracy", "recipe", "seed", "shots", "synthetic",
                "synthetic_images"}


@pytest.fixture
def cfg():
    return get_config("mini", **TINY)


@pytest.fixture(scope="module")
def real():
    return load_dataset("fashion-mnist", "train", shots=2)  # 20 images, 2 per class


@pytest.fixture(scope="module")
def generator_part():
    return load_mini_part("test")


@pytest.fixture(scope="module")
def synthetic(generator_part):
    """A stand-in synthetic set: 2 per class of the test images (disjoint from `real`)."""
    labels = generator_part.labels.numpy()
    idx = np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)])
    return generator_part.subset(idx)


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("fashion-mnist", "test").subset(range(0, 10000, 500))  # 20 images


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def stage_log(monkeypatch):
    """Wrap train_stage: one (stage name, state at start, state at end) per stage run."""
    log = []
    original = transfer.train_stage

    def wrapper(model, stage, *args, **kwargs):
        log.append({"name": stage.name, "start": snapshot(model)})
        rows = original(model, stage, *args, **kwargs)
        log[-1]["end"] = snapshot(model)
        return rows

    monkeypatch.setattr(transfer, "train_stage", wrapper)
    return log


# -- plans -------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe, names", [
    ("vanilla", ["real"]), ("mixed", ["mixed"]), ("bridged", ["synthetic", "real"]),
    ("bridged-reinit", ["synthetic", "real"]), ("bridged++", ["synthetic", "real"]),
    ("synthetic-only", ["synthetic"])])
def test_stage_names_and_order(recipe, names, cfg, real, synthetic):
    stages = plan_stages(recipe, real, synthetic, cfg)
    assert [s.name for s in stages] == names
    data = {"real": real, "synthetic": synthetic}
    for s in stages:
        if s.name in data:
            assert s.data is data[s.name]
    assert RECIPES == ("vanilla", "mixed", "bridged", "bridged-reinit", "bridged++", "synthetic-only")


def test_vanilla_ignores_a_given_synthetic_set(cfg, real, synthetic):
    assert [s.data for s in plan_stages("vanilla", real, synthetic, cfg)] == [real]
    assert [s.data for s in plan_stages("vanilla", real, None, cfg)] == [real]


@pytest.mark.parametrize("recipe, reinit", [("bridged", False), ("bridged-reinit", True),
                                            ("bridged++", True)])
def test_head_reset_only_before_the_real_stage_of_reinit_recipes(recipe, reinit, cfg, real,
                                                                 synthetic):
    syn, rl = plan_stages(recipe, real, synthetic, cfg)
    assert syn.reinit_head is False and rl.reinit_head is reinit
    assert all(not s.reinit_head for r in ("vanilla", "mixed")
               for s in plan_stages(r, real, synthetic, cfg))


def test_mixed_uses_the_bridged_budget_on_real_and_synthetic(cfg, real, synthetic):
    syn, rl = plan_stages("bridged", real, synthetic, cfg)
    (mixed,) = plan_stages("mixed", real, synthetic, cfg)
    # bridged: synthetic ceil(20/8) x 1 epoch = 3 steps, real max(ceil(20/32) x 2, 2) = 2 steps
    assert (stage_steps(syn), stage_steps(rl)) == (3, 2)
    assert mixed.steps == stage_steps(mixed) == stage_steps(syn) + stage_steps(rl) == 5
    assert len(mixed.data) == len(real) + len(synthetic)
    assert torch.equal(mixed.data.images, torch.cat([real.images, synthetic.images]))
    assert torch.equal(mixed.data.labels, torch.cat([real.labels, synthetic.labels]))
    assert mixed.cfg.batch_size == cfg.train.synthetic.batch_size


def test_mixup_is_set_only_for_the_synthetic_stage_of_bridged_pp(cfg, real, synthetic):
    assert cfg.train.mixup_alpha > 0
    for recipe in RECIPES:
        for s in plan_stages(recipe, real, synthetic, cfg):
            if recipe == "bridged++" and s.name == "synthetic":
                assert s.mixup_alpha == cfg.train.mixup_alpha
            else:
                assert s.mixup_alpha == 0, f"{recipe}/{s.name} uses Mixup"


def test_mixed_real_fraction_sets_the_real_share(real, synthetic):
    default = plan_stages("mixed", real, synthetic, get_config("mini", **TINY))[0]
    assert len(default.data) == len(real) + len(synthetic)  # the paper's all real + all synthetic
    half = plan_stages("mixed", real, synthetic,
                       get_config("mini", **TINY, **{"train.mixed_real_fraction": 0.5}))[0]
    assert len(half.data) == 2 * len(real) and half.steps == default.steps


# -- errors ------------------------------------------------------------------------------------

def test_unknown_recipe_lists_the_valid_ones(cfg, real, synthetic, tmp_path):
    for call in (lambda: plan_stages("bridged+", real, synthetic, cfg),
                 lambda: run_recipe(cfg, "bridged+", real, real, synthetic),
                 lambda: train_run(cfg, "bridged+", tmp_path / "run")):
        with pytest.raises(ValueError) as err:
            call()
        assert "bridged+" in str(err.value)
        assert all(r in str(err.value) for r in RECIPES)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe", ["mixed", *TWO_STAGE])
def test_recipes_needing_synthetic_images_say_so(recipe, cfg, real, tmp_path):
    with pytest.raises(ValueError, match="--synthetic"):
        plan_stages(recipe, real, None, cfg)
    with pytest.raises(ValueError, match="--synthetic"):
        train_run(cfg, recipe, tmp_path / "run", shots=1)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe", ["mixed", *TWO_STAGE])
def test_synthetic_classes_must_match_the_real_ones(recipe, cfg, real, synthetic):
    renamed = ImageSet(synthetic.images, synthetic.labels,
                       [f"number {n}" for n in synthetic.class_names])
    with pytest.raises(ValueError, match="do not match"):
        plan_stages(recipe, real, renamed, cfg)
    reordered = ImageSet(synthetic.images, synthetic.labels, synthetic.class_names[::-1])
    with pytest.raises(ValueError, match="do not match"):
        plan_stages(recipe, real, reordered, cfg)


# -- what the recipes do when run -------------------------------------------------------------

def test_mixup_runs_in_the_synthetic_stage_only(monkeypatch, cfg, real, synthetic, test_set):
    current, calls = {}, []
    original_stage, original_mixup = transfer.train_stage, transfer.mixup

    def stage_wrapper(model, stage, *args, **kwargs):
        current["name"] = stage.name
        return original_stage(model, stage, *args, **kwargs)

    def mixup_wrapper(x, y, alpha, gen):
        calls.append((current["name"], alpha, len(x)))
        return original_mixup(x, y, alpha, gen)

    monkeypatch.setattr(transfer, "train_stage", stage_wrapper)
    monkeypatch.setattr(transfer, "mixup", mixup_wrapper)
    _, history = run_recipe(cfg, "bridged++", real, test_set, synthetic, track_test=False)
    syn_steps = stage_steps(plan_stages("bridged++", real, synthetic, cfg)[0])
    assert [c[0] for c in calls] == ["synthetic"] * syn_steps
    assert all(alpha == cfg.train.mixup_alpha for _, alpha, _ in calls)
    assert all(n == cfg.train.synthetic.batch_size for _, _, n in calls)
    assert list(history.stage.unique()) == ["synthetic", "real"]

    calls.clear()
    for recipe in ("vanilla", "mixed", "bridged", "bridged-reinit"):
        run_recipe(cfg, recipe, real, test_set, synthetic, track_test=False)
    assert calls == [], "Mixup ran outside bridged++'s synthetic stage"


@pytest.mark.parametrize("recipe", ["bridged-reinit", "bridged++"])
def test_head_is_reinitialised_between_stages(recipe, stage_log, cfg, real, synthetic, test_set):
    model, _ = run_recipe(cfg, recipe, real, test_set, synthetic, track_test=False)
    head = head_parameters(model)
    assert [s["name"] for s in stage_log] == ["synthetic", "real"]
    end1, start2 = stage_log[0]["end"], stage_log[1]["start"]
    for k in head:
        assert not torch.equal(end1[k], start2[k]), f"{k} was carried over"
    for k in end1.keys() - head:
        assert torch.equal(end1[k], start2[k]), f"body tensor {k} changed between stages"
    # the reset head is the seeded fresh head, whatever the synthetic stage made of it
    fresh = create_classifier(cfg, 10)
    transfer.reinit_head(fresh, seed=0 + 1000)
    for k in head:
        assert torch.equal(start2[k], fresh.state_dict()[k])


def test_plain_bridged_keeps_the_head(stage_log, cfg, real, synthetic, test_set):
    run_recipe(cfg, "bridged", real, test_set, synthetic, track_test=False)
    end1, start2 = stage_log[0]["end"], stage_log[1]["start"]
    assert end1.keys() == start2.keys()
    for k in end1:
        assert torch.equal(end1[k], start2[k]), f"{k} changed between stages"
    # and the synthetic stage really trained the head it hands over
    assert not torch.equal(stage_log[0]["start"]["fc.weight"], end1["fc.weight"])


def test_runs_are_reproducible_for_a_seed(cfg, real, test_set):
    a, ha = run_recipe(cfg, "vanilla", real, test_set, seed=3)
    b, hb = run_recipe(cfg, "vanilla", real, test_set, seed=3)
    c, _ = run_recipe(cfg, "vanilla", real, test_set, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc.weight"], sc["fc.weight"])
    pd.testing.assert_frame_equal(ha.drop(columns="wall_s"), hb.drop(columns="wall_s"))


def test_a_tiny_vanilla_run_learns(test_set):
    cfg = get_config("mini", **{"train.real.epochs": 1, "train.real.min_steps": 40,
                                "train.real.batch_size": 16})
    data = load_dataset("fashion-mnist", "train", shots=4)     # 40 images
    model, history = run_recipe(cfg, "vanilla", data, test_set, seed=0, track_test=False)
    assert history.images_seen.iloc[-1] == 40 * 16
    # 1.0 in every seed tried; chance is 0.1
    assert evaluate(model, data, cfg)["accuracy"] > 0.5
    assert history.train_loss.iloc[-1] < math.log(10)


def test_history_rows(cfg, real, synthetic, test_set):
    _, h = run_recipe(cfg, "bridged", real, test_set, synthetic)
    assert list(h.stage) == ["synthetic", "real", "real"]   # 1 synthetic epoch, 2 real epochs
    assert list(h.epoch) == [1, 1, 2]
    assert list(h.images_seen) == [3 * 8, 32, 2 * 32]
    assert h.test_acc.between(0, 1).all() and h.train_acc.between(0, 1).all()
    _, h = run_recipe(cfg, "bridged", real, test_set, synthetic, track_test=False)
    assert h.test_acc.isna().tolist() == [True, True, False]  # only the final one is kept


def test_evaluate_reports_overall_and_per_class_accuracy(cfg, real):
    model = create_classifier(cfg, 10)
    result = evaluate(model, real, cfg)
    assert set(result["per_class_accuracy"]) == set(real.class_names)
    # 2 images per class: overall accuracy is the mean of the per-class ones
    assert result["accuracy"] == pytest.approx(np.mean(list(result["per_class_accuracy"].values())))
    logits = models.predict(model, real, cfg, batch_size=7)
    assert logits.shape == (len(real), 10)
    assert torch.allclose(logits, models.predict(model, real, cfg), atol=1e-5)


# -- augmentation and batching -----------------------------------------------------------------

def is_translation(out, img, pad):
    """Whether `out` is `img` moved by at most `pad` pixels (white coming in)."""
    h, w = img.shape[-2:]
    padded = F.pad(img, (pad,) * 4, value=1.0)
    return any(torch.equal(out, padded[:, dy:dy + h, dx:dx + w])
               for dy in range(2 * pad + 1) for dx in range(2 * pad + 1))


def test_shift_keeps_shape_and_range_and_never_flips():
    x = torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        out = augment(x, "shift", torch.Generator().manual_seed(seed))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.min() >= 0 and out.max() <= 1
        assert all(is_translation(o, i, pad=32 // 8) for o, i in zip(out, x))
    moved = augment(x, "shift", torch.Generator().manual_seed(0))
    assert not torch.equal(moved, x)
    assert torch.equal(moved, augment(x, "shift", torch.Generator().manual_seed(0)))
    white = torch.ones(4, 3, 32, 32)
    assert torch.equal(augment(white, "shift", torch.Generator().manual_seed(0)), white)


def ramps(n, h, w):
    """n images whose channel 0 rises left to right (0 -> 1) and channel 1 top to bottom."""
    x = torch.zeros(n, 3, h, w)
    x[:, 0] = torch.linspace(0, 1, w).view(1, 1, w)
    x[:, 1] = torch.linspace(0, 1, h).view(1, h, 1)
    return x


def test_crop_flip_is_a_resized_crop_of_a_drawn_box_and_sometimes_flipped():
    """Each output spans the columns and rows of its drawn box (the ramps say where it came
    from), back at full size; about half are mirrored (channel 0 then falls)."""
    n, h, w = 32, 48, 64
    x = ramps(n, h, w)
    out = augment(x, "crop-flip", torch.Generator().manual_seed(0))
    boxes = crop_boxes(n, h, w, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    flipped = []
    for o, (top, left, ch, cw) in zip(out, boxes):
        cols, rows = o[0].mean(0), o[1].mean(1)
        flipped.append(bool(cols[0] > cols[-1]))
        ends = sorted([cols[0].item(), cols[-1].item()])
        assert ends == pytest.approx([left / (w - 1), (left + cw - 1) / (w - 1)], abs=1.5 / w)
        assert [rows[0].item(), rows[-1].item()] == pytest.approx(
            [top / (h - 1), (top + ch - 1) / (h - 1)], abs=1.5 / h)
    assert 0.25 < np.mean(flipped) < 0.75
    assert torch.equal(out, augment(x, "crop-flip", torch.Generator().manual_seed(0)))
    assert torch.equal(augment(x, "none", torch.Generator()), x)


def test_crop_boxes_keep_torchvisions_scale_and_ratio():
    boxes = crop_boxes(2000, 96, 128, torch.Generator().manual_seed(0))
    top, left, ch, cw = (np.array(c) for c in zip(*boxes))
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + ch <= 96).all() and (left + cw <= 128).all()
    area, aspect = ch * cw / (96 * 128), cw / ch
    assert area.min() > 0.07 and area.max() <= 1 and np.ptp(area) > 0.8     # 8-100% of the area
    assert aspect.min() > 0.7 and aspect.max() < 1.4                        # 3/4-4/3, rounded
    assert len(set(boxes)) > 1900
    # a box that can never fit (twice the area) falls back to torchvision's central crop
    from torchvision.transforms import RandomResizedCrop
    for h, w in ((10, 40), (40, 10), (30, 32)):
        central = RandomResizedCrop.get_params(torch.zeros(1, h, w), [2, 2], [3 / 4, 4 / 3])
        assert crop_boxes(1, h, w, torch.Generator(), scale=(2, 2)) == [tuple(central)]


def test_batch_stream_repeats_a_small_set_evenly():
    stream = transfer._batch_stream(10, 32, torch.Generator().manual_seed(0))
    batches = [next(stream) for _ in range(5)]
    assert all(len(b) == 32 for b in batches)
    flat = torch.cat(batches)
    for i in range(0, len(flat), 10):                  # every image once per pass
        assert sorted(flat[i:i + 10].tolist()) == list(range(10))


def test_a_ten_image_set_trains_with_batch_size_32(cfg):
    ten = load_dataset("fashion-mnist", "train", shots=1)
    stage = Stage("real", ten, replace(cfg.train.real, batch_size=32, epochs=1, min_steps=3))
    model = create_classifier(cfg, 10)
    before = snapshot(model)
    rows = train_stage(model, stage, None, cfg, seed=0)
    assert len(rows) == 1 and rows[0]["images_seen"] == 3 * 32
    assert math.isfinite(rows[0]["train_loss"]) and math.isnan(rows[0]["test_acc"])
    after = model.state_dict()
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert not torch.equal(before["conv1.0.weight"], after["conv1.0.weight"])  # whole network


def test_mixup_mixes_images_and_labels_with_one_lambda():
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 2, 2).contiguous()
    y = torch.arange(6)
    mixed, ya, yb, lam = transfer.mixup(x, y, 0.2, torch.Generator().manual_seed(0))
    assert 0 <= lam <= 1 and torch.equal(ya, y)
    assert sorted(yb.tolist()) == list(range(6))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[yb])


# -- runs on disk ------------------------------------------------------------------------------

def write_synthetic_folder(root, images: ImageSet, metadata: bool):
    from PIL import Image
    rows = []
    for i, (img, label) in enumerate(zip(images.images, images.labels)):
        name = images.class_names[int(label)]
        folder = name.replace(" ", "_") if metadata else name
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / folder / f"{i}.png")
        rows.append({"file_name": f"{folder}/{i}.png", "label": int(label), "class_name": name})
    if metadata:
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def check_run_files(out, cfg, recipe, shots, seed):
    assert load_config(out / "config.json").to_dict() == cfg.to_dict()
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns[:len(HISTORY_COLUMNS)]) == HISTORY_COLUMNS
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRICS_KEYS <= metrics.keys()
    assert (metrics["recipe"], metrics["seed"], metrics["shots"]) == (recipe, seed, shots)
    assert 0 <= metrics["test_acc"] <= 1
    test_names = load_dataset("fashion-mnist", "test").class_names
    assert set(metrics["per_class_accuracy"]) == set(test_names)
    assert history.test_acc.iloc[-1] == pytest.approx(metrics["test_acc"])
    return history, metrics


def test_train_run_writes_its_files_and_refuses_to_overwrite(tmp_path, cfg):
    out = tmp_path / "run"
    returned = train_run(cfg, "vanilla", out, shots=1, seed=2)
    history, metrics = check_run_files(out, cfg, "vanilla", 1, 2)
    assert returned == metrics
    assert list(history.stage) == ["real", "real"]
    assert metrics["synthetic"] is None and metrics["synthetic_images"] == 0
    def files():  # the run's files, the classifier folder's included
        return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    written = files()
    assert {"config.json", "history.csv", "metrics.json"} <= written.keys()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_run(cfg, "vanilla", out, shots=1, seed=5)
    assert files() == written


@pytest.mark.parametrize("metadata", [True, False], ids=["metadata.jsonl", "class-folders"])
def test_bridged_train_run_on_a_synthetic_image_folder(tmp_path, cfg, synthetic, metadata):
    folder = write_synthetic_folder(tmp_path / "synthetic", synthetic.subset(range(0, 20, 2)),
                                    metadata)
    out = tmp_path / "run"
    train_run(cfg, "bridged++", out, shots=1, seed=0, synthetic_dir=folder)
    history, metrics = check_run_files(out, cfg, "bridged++", 1, 0)
    assert list(history.stage) == ["synthetic", "real", "real"]
    assert metrics["synthetic"] == str(folder) and metrics["synthetic_images"] == 10
    assert [s["stage"] for s in metrics["stages"]] == ["synthetic", "real"]


def test_train_run_rejects_a_folder_of_other_classes(tmp_path, cfg, synthetic):
    other = ImageSet(synthetic.images, synthetic.labels,
                     [f"number {n}" for n in synthetic.class_names])
    folder = write_synthetic_folder(tmp_path / "synthetic", other.subset(range(0, 20, 2)), True)
    with pytest.raises(ValueError, match="do not match"):
        train_run(cfg, "bridged", tmp_path / "run", shots=1, synthetic_dir=folder)
    assert not (tmp_path / "run").exists()


def test_compute_matched_vanilla_gets_the_bridged_budget(real, synthetic):
    cfg = get_config("mini", **TINY, **{"train.match_compute": True})
    bridged = plan_stages("bridged", real, synthetic, cfg)
    (vanilla,) = plan_stages("vanilla", real, synthetic, cfg)
    assert vanilla.name == "real" and vanilla.data is real
    assert stage_steps(vanilla) == sum(stage_steps(s) for s in bridged)
    (plain,) = plan_stages("vanilla", real, synthetic, get_config("mini", **TINY))
    assert stage_steps(plain) == stage_steps(bridged[1])
