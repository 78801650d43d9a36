"""LEEP transferability (Nguyen et al. 2020): hand-computed cases, limits, and on a real model."""
import math

import numpy as np
import pytest
import torch

from bridgelib.config import get_config
from bridgelib.datasets import load_dataset
from bridgelib.metrics import leep_score, model_leep
from bridgelib.models import create_classifier


def leep_by_loops(theta, y, num_target):
    """LEEP written out with plain loops, straight from its definition."""
    n, num_source = len(y), len(theta[0])
    joint = [[sum(theta[i][z] for i in range(n) if y[i] == t) / n for z in range(num_source)]
             for t in range(num_target)]
    marginal = [sum(joint[t][z] for t in range(num_target)) for z in range(num_source)]
    return sum(math.log(sum(joint[y[i]][z] / marginal[z] * theta[i][z] for z in range(num_source)))
               for i in range(n)) / n


def test_leep_hand_computed_two_by_two():
    theta = [[0.8, 0.2], [0.3, 0.7]]
    y = [0, 1]
    # Joint P(y, z) = mean_i theta_i[z] [y_i = y]  (n = 2):
    #   P(0, .) = [0.8, 0.2] / 2 = [0.40, 0.10];   P(1, .) = [0.3, 0.7] / 2 = [0.15, 0.35]
    # Marginal P(z) = [0.40 + 0.15, 0.10 + 0.35] = [0.55, 0.45]
    # Conditional P(y | z): P(0 | .) = [0.40/0.55, 0.10/0.45];  P(1 | .) = [0.15/0.55, 0.35/0.45]
    # Image 0 (y=0): sum_z P(0|z) theta_0[z] = 0.8 * 0.40/0.55 + 0.2 * 0.10/0.45
    # Image 1 (y=1): sum_z P(1|z) theta_1[z] = 0.3 * 0.15/0.55 + 0.7 * 0.35/0.45
    # Both sums are 0.58182 + 0.04444 = 0.08182 + 0.54444 = 0.62626, so LEEP = log(0.62626) = -0.46799
    expected = (math.log(0.8 * 0.40 / 0.55 + 0.2 * 0.10 / 0.45)
                + math.log(0.3 * 0.15 / 0.55 + 0.7 * 0.35 / 0.45)) / 2
    assert leep_score(np.array(theta), np.array(y)) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(-0.46799, abs=1e-5)  # the number itself, for the reader


def test_leep_matches_its_definition_on_random_inputs():
    rng = np.random.default_rng(0)
    theta = rng.dirichlet(np.ones(5), size=40)          # 40 images, 5 source labels
    y = rng.integers(0, 3, size=40)                     # 3 target classes
    assert leep_score(theta, y, 3) == pytest.approx(leep_by_loops(theta, y, 3), abs=1e-10)


def test_leep_accepts_torch_tensors():
    rng = np.random.default_rng(1)
    theta, y = rng.dirichlet(np.ones(4), size=12), rng.integers(0, 2, size=12)
    assert leep_score(torch.tensor(theta), torch.tensor(y)) == pytest.approx(leep_score(theta, y))


def test_perfectly_informative_source_gives_zero():
    y = np.array([0, 1, 2, 2, 1, 0, 3])
    theta = np.eye(4)[y]                                # one-hot on the true label
    assert leep_score(theta, y) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("num_target", [2, 5, 10])
def test_uninformative_source_gives_log_one_over_classes(num_target):
    y = np.repeat(np.arange(num_target), 3)             # balanced
    theta = np.full((len(y), 7), 1 / 7)                 # uniform over 7 source labels
    assert leep_score(theta, y, num_target) == pytest.approx(math.log(1 / num_target), abs=1e-12)


def test_more_informative_source_scores_higher():
    y = np.repeat(np.arange(4), 5)
    sharp = 0.9 * np.eye(4)[y] + 0.1 / 4
    blurry = 0.3 * np.eye(4)[y] + 0.7 / 4
    assert 0 > leep_score(sharp, y) > leep_score(blurry, y) > math.log(1 / 4)


def test_model_leep_is_finite_and_negative_on_the_shipped_backbone():
    cfg = get_config("mini")
    model = create_classifier(cfg, None)               # source labels: the pretraining glyphs
    data = load_dataset("fashion-mnist", "train", shots=2)
    score = model_leep(model, data, cfg)
    assert isinstance(score, float)
    assert math.isfinite(score) and score < 0
    assert score >= math.log(1e-12)                    # the clip floor, never -inf


def test_out_of_sample_leep_of_a_memorising_source_is_not_above_chance():
    # Random labels, and a source model that memorised the set: every image its own source
    # label (one-hot). In sample, P(y | z) learns each image's label and LEEP is a perfect 0;
    # out of sample the scored half's source labels were never seen, so nothing transfers.
    rng = np.random.default_rng(1)
    classes, n = 5, 60
    y = rng.integers(0, classes, n)
    theta = np.eye(n)
    assert leep_score(theta, y, classes) == pytest.approx(0.0, abs=1e-9)
    assert leep_score(theta, y, classes, out_of_sample=True) <= math.log(1 / classes) + 1e-9


def test_out_of_sample_leep_keeps_a_real_signal():
    # A source whose labels map to the target's (one-hot on the true class, 4 of 6 classes
    # merged into 2 source labels) transfers out of sample too: far above chance, below 0.
    y = np.repeat(np.arange(6), 8)
    theta = np.eye(4)[np.minimum(y, 3)]
    score = leep_score(theta, y, 6, out_of_sample=True)
    assert math.log(1 / 6) + 0.5 < score < 0
    uniform = np.full((len(y), 4), 0.25)
    assert leep_score(uniform, y, 6, out_of_sample=True) == pytest.approx(math.log(1 / 6), abs=1e-9)
