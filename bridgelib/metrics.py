"""Measures: LEEP transferability, the judge's recognisability, and the synthetic-real style gap.

Taught in notebooks 02, 04.
"""
from __future__ import annotations

import numpy as np
import torch

from bridgelib.models import create_classifier, input_stats, load_judge, predict

# Heavy third-party modules (scipy, scikit-learn) are imported inside the functions that use them,
# so that `import bridgelib` and `bridge --help` do not load them.


def leep_score(source_probs: np.ndarray | torch.Tensor, target_labels, num_target: int | None = None,
               out_of_sample: bool = False) -> float:
    """LEEP (Nguyen et al. 2020): how well a source model's predictions transfer to target labels.

    With theta_i the source model's softmax on target image i (over source labels z):
    P(y, z) = mean_i theta_i[z] [y_i = y];  P(y | z) = P(y, z) / P(z);
    LEEP = mean_i log sum_z P(y_i | z) theta_i[z].  Higher (closer to 0) transfers better.

    In sample (the paper's), P(y | z) is fitted on the images it then scores: with many source
    labels and few images it memorises them, so a small set reads as transferable (the mini
    backbone's 58 labels scored -0.66 at 1 shot, -1.49 on the full pool). `out_of_sample`: fit
    P(y | z) on one half of the images (a seeded class-balanced split), score the other half,
    swap, average; a source label the fitting half never activated maps to chance (1/classes).
    """
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.asarray(target_labels, dtype=np.int64)
    num_target = num_target or int(y.max()) + 1
    if not out_of_sample:
        cond = _conditional(theta, y, num_target, prior=0.0)
        return float(np.mean(np.log((theta * cond[y]).sum(1).clip(1e-12))))
    halves = _halves(y)
    if not (len(halves[0]) and len(halves[1])):
        return float("nan")  # one image: nothing to fit on and score apart
    scores = [np.log((theta[b] * _conditional(theta[a], y[a], num_target)[y[b]]).sum(1)
                     .clip(1e-12)) for a, b in (halves, halves[::-1])]
    return float(np.mean(np.concatenate(scores)))


def _conditional(theta: np.ndarray, y: np.ndarray, num_target: int,
                 prior: float | None = None) -> np.ndarray:
    """P(y | z) (num_target, source labels) from images' source probabilities and labels.
    `prior`: mass of a uniform prior per source label (None: one image's worth, so a z the
    images never activated gives 1/num_target; 0: none, the paper's estimate)."""
    joint = np.zeros((num_target, theta.shape[1]))
    np.add.at(joint, y, theta)
    joint /= len(y)
    prior = 1.0 / len(y) if prior is None else prior
    return (joint + prior / num_target) / (joint.sum(0, keepdims=True) + prior).clip(1e-12)


def _halves(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the images: sorted by class (ties in a seeded random order) and
    dealt alternately, so each half holds half of every class (classes of one image alternate
    between halves). Seeded: every model scored on the same images gets the same halves."""
    order = np.lexsort((np.random.default_rng(0).permutation(len(y)), y))
    return np.sort(order[0::2]), np.sort(order[1::2])


def model_leep(model, data, cfg, out_of_sample: bool = True) -> float:
    """LEEP of `model` (its own head as the source labels) on an ImageSet of target data, out
    of sample by default (`leep_score`)."""
    probs = predict(model, data, cfg).softmax(1).numpy()
    return leep_score(probs, data.labels.numpy(), len(data.class_names), out_of_sample)


@torch.no_grad()
def recognisability(images: torch.Tensor, labels: torch.Tensor, judge=None) -> float:
    """Share of images (N, 3, 32, 32) uint8 that the independent judge reads as their label."""
    judge = judge if judge is not None else load_judge()
    mean, std = input_stats(judge)
    pred = torch.cat([judge((images[i:i + 512].float() / 255 - mean) / std).argmax(1)
                      for i in range(0, len(images), 512)])
    return (pred == torch.as_tensor(labels)).float().mean().item()


@torch.no_grad()
def backbone_features(images: torch.Tensor, cfg, model=None, batch_size: int = 256) -> np.ndarray:
    """Penultimate features of the profile's pretrained backbone for uint8 images (N, 3, H, W)."""
    model = (model or create_classifier(cfg, None)).eval()
    mean, std = input_stats(model)
    feats = [model.forward_head(model.forward_features((images[i:i + batch_size].float() / 255 - mean) / std),
                                pre_logits=True) for i in range(0, len(images), batch_size)]
    return torch.cat(feats).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    from scipy import linalg
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean.real))


def domain_correct(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per image, whether a logistic-regression real-vs-synthetic classifier on features gets it
    right when it is held out (5-fold cross-validation on equal numbers of `a` and `b`).

    Per-image correctness is what a bootstrap over images resamples."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    n = min(len(a), len(b))
    rng = np.random.default_rng(seed)
    x = np.concatenate([a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]])
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    hit = cross_val_predict(clf, x, y, cv=folds) == y
    return hit[:n], hit[n:]


def domain_accuracy(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic-regression real-vs-synthetic classifier on features.

    0.5 means the two sets cannot be told apart; 1.0 means they are fully separable.
    """
    return float(np.concatenate(domain_correct(a, b, seed)).mean())
