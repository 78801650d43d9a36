"""The committed Fashion-MNIST split, its 32-px images, and k-shot subsets of the training pool."""
import json

import numpy as np
import pytest
import torch

from bridgelib.datasets import load_dataset
from bridgelib.mini import fashion
from bridgelib.mini.fashion import MINI_PARTS, load_mini_part
from bridgelib.splits import kshot_subset, parse_shots

KS = (1, 2, 4, 8, 16)
N_TRAIN, N_TEST = 60000, 10000


@pytest.fixture(scope="module")
def pool():
    return load_mini_part("pool")


@pytest.fixture(scope="module")
def pool_index(pool):
    """{image bytes: label} of every pool image."""
    return {img.numpy().tobytes(): int(y) for img, y in zip(pool.images, pool.labels)}


def test_generator_share_pool_and_test_are_disjoint_and_cover_the_training_images():
    split = json.loads(fashion.SPLIT_FILE.read_text())
    pool, share = set(split["pool"]), set(split["generator"])
    assert len(pool) == len(split["pool"]) and len(share) == len(split["generator"])
    assert not pool & share, "the pool and the generator's share overlap"
    assert pool | share == set(range(N_TRAIN))
    # the test set is Fashion-MNIST's own t10k file: no training index can be in it
    with np.load(fashion.SHIP_DIR / "test.npz") as z:
        assert z["index"].tolist() == list(range(N_TEST)) and len(z["labels"]) == N_TEST


def test_shipped_pool_is_the_committed_split():
    split = json.loads(fashion.SPLIT_FILE.read_text())
    with np.load(fashion.SHIP_DIR / "pool.npz") as z:
        assert z["index"].tolist() == split["pool"]
        assert np.bincount(z["labels"]).tolist() == [split["pool_per_class"]] * 10


def test_split_is_the_seeded_draw():
    """The committed split is make_split(seed) of the labels; the labels ship with the pool."""
    split = json.loads(fashion.SPLIT_FILE.read_text())
    labels = np.full(N_TRAIN, -1)
    with np.load(fashion.SHIP_DIR / "pool.npz") as z:
        labels[z["index"]] = z["labels"]
    try:
        _, raw_labels = fashion.read_raw("train")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST's raw files are not on this machine")
    assert (labels[split["pool"]] == raw_labels[split["pool"]]).all()
    assert fashion.make_split(raw_labels, split["seed"], split["pool_per_class"]) == \
        {"pool": split["pool"], "generator": split["generator"]}


@pytest.mark.parametrize("part", MINI_PARTS)
def test_part_images_are_32px_dark_on_white(part):
    s = load_mini_part(part)
    assert s.images.shape == ({"pool": 1000, "test": N_TEST}[part], 3, 32, 32)
    assert s.images.dtype == torch.uint8 and s.labels.dtype == torch.int64
    assert torch.equal(s.images[:, 0], s.images[:, 1]) and torch.equal(s.images[:, 0], s.images[:, 2])
    assert (s.images[:, :, :2, :] == 255).all()  # 2 px of white padding
    assert s.images.float().mean() > 128  # mostly white background, not garment
    assert len(s.class_names) == 10 and set(s.labels.tolist()) == set(range(10))


def test_restyled_looks_differ_from_the_target_look():
    raw = np.load(fashion.SHIP_DIR / "pool.npz")["images"][:50]
    target = fashion.restyle(raw, "target").astype(float)
    for look in fashion.LOOKS:
        other = fashion.restyle(raw, look)
        assert other.shape == target.shape and other.dtype == np.uint8
        assert np.abs(other - target).mean() > 10, look
    with pytest.raises(ValueError, match="outline"):
        fashion.restyle(raw, "sepia")


def test_unknown_part_is_an_error():
    with pytest.raises(ValueError, match="pool"):
        load_mini_part("train")


@pytest.mark.parametrize("k", KS)
def test_kshot_has_k_per_class_drawn_from_the_pool(pool, pool_index, k):
    sub = kshot_subset(pool, k, seed=0)
    assert len(sub) == 10 * k
    assert torch.bincount(sub.labels, minlength=10).tolist() == [k] * 10
    for img, y in zip(sub.images, sub.labels):
        assert pool_index.get(img.numpy().tobytes()) == int(y), "image not in the pool"
    assert sub.class_names == pool.class_names


@pytest.mark.parametrize("k", KS)
def test_kshot_is_seeded(pool, k):
    a, b, c = (kshot_subset(pool, k, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_load_dataset_train_is_the_kshot_subset_of_the_pool(pool):
    assert torch.equal(load_dataset("fashion-mnist", "train", shots=4, seed=2).images,
                       kshot_subset(pool, 4, seed=2).images)
    assert torch.equal(load_dataset("fashion-mnist", "test").images, load_mini_part("test").images)


@pytest.mark.parametrize("shots", ["full", None])
def test_full_is_the_whole_pool(pool, shots):
    sub = kshot_subset(pool, shots)
    assert len(sub) == len(pool) and torch.equal(sub.images, pool.images)
    assert parse_shots(shots) is None


@pytest.mark.parametrize("shots", [0, -1, 5000, "abc"])
def test_bad_shots_are_a_one_line_error_naming_the_value(pool, shots):
    with pytest.raises(ValueError) as err:
        kshot_subset(pool, shots)
    msg = str(err.value)
    assert str(shots) in msg and "\n" not in msg
    with pytest.raises(ValueError):
        load_dataset("fashion-mnist", "train", shots=shots)


def test_unknown_dataset_and_split_are_errors():
    with pytest.raises(ValueError, match="cifar"):
        load_dataset("cifar", "train")
    with pytest.raises(ValueError, match="val"):
        load_dataset("fashion-mnist", "val")
