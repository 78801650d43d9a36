"""The committed digits split, its 32-px images, and k-shot subsets of the training pool."""
import json
from collections import Counter

import pytest
import torch

from bridgelib.data import (SPLIT_FILE, SPLIT_PARTS, digits_raw, digits_split, kshot_subset,
                            load_digits_part, load_real, make_digits_split, parse_shots)

SPLIT_FILE_COMMITTED = SPLIT_FILE.exists()  # checked before any test could write it
N_DIGITS = 1797
KS = (1, 2, 4, 8, 16)


@pytest.fixture(scope="module")
def pool():
    return load_digits_part("pool")


@pytest.fixture(scope="module")
def pool_index(pool):
    """{image bytes: label} of every pool image."""
    return {img.numpy().tobytes(): int(y) for img, y in zip(pool.images, pool.labels)}


def test_split_file_is_committed():
    assert SPLIT_FILE_COMMITTED, f"{SPLIT_FILE} is missing: run bridgelib.data.digits_split() once"


def test_split_parts_are_disjoint_and_cover_all_digits():
    split = digits_split()
    sets = {p: set(split[p]) for p in SPLIT_PARTS}
    assert all(len(sets[p]) == len(split[p]) for p in SPLIT_PARTS)  # no repeats inside a part
    for i, a in enumerate(SPLIT_PARTS):
        for b in SPLIT_PARTS[i + 1:]:
            assert not sets[a] & sets[b], f"{a} and {b} overlap"
    assert set().union(*sets.values()) == set(range(N_DIGITS))


def test_split_is_stratified():
    _, labels = digits_raw()
    per_class = Counter(labels.tolist())
    for part, idx in digits_split().items():
        counts = Counter(labels[idx].tolist())
        for c, n in per_class.items():
            assert abs(counts[c] - n / 3) <= 1, f"{part}: class {c} has {counts[c]} of {n}"


def test_split_file_equals_recomputed_split():
    stored = json.loads(SPLIT_FILE.read_text())
    assert stored["seed"] == 0
    assert {p: stored[p] for p in SPLIT_PARTS} == make_digits_split(stored["seed"])


@pytest.mark.parametrize("part", SPLIT_PARTS)
def test_part_images_are_32px_dark_ink_on_white(part):
    s = load_digits_part(part)
    assert s.images.shape == (len(digits_split()[part]), 3, 32, 32)
    assert s.images.dtype == torch.uint8 and s.labels.dtype == torch.int64
    assert torch.equal(s.images[:, 0], s.images[:, 1]) and torch.equal(s.images[:, 0], s.images[:, 2])
    assert (s.images[:, :, 0, 0] == 255).all()  # the digits' top-left pixel is always blank
    corners = s.images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]].float()
    assert corners.mean() > 250
    assert s.images.float().mean() > 128  # mostly paper, not ink
    assert len(s.class_names) == 10 and set(s.labels.tolist()) == set(range(10))


def test_unknown_part_is_an_error():
    with pytest.raises(ValueError, match="train"):
        load_digits_part("train")


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


def test_load_real_train_is_the_kshot_subset_of_the_pool(pool):
    assert torch.equal(load_real("digits", "train", shots=4, seed=2).images,
                       kshot_subset(pool, 4, seed=2).images)
    assert torch.equal(load_real("digits", "test").images, load_digits_part("test").images)


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
        load_real("digits", "train", shots=shots)


def test_unknown_dataset_and_split_are_errors():
    with pytest.raises(ValueError, match="cifar"):
        load_real("cifar", "train")
    with pytest.raises(ValueError, match="val"):
        load_real("digits", "val")
