"""Every artifact in the format its ecosystem loads with no code of ours (issue 28), and the
paper cited as what it is: an arXiv preprint, submitted to ICLR 2024 and not accepted."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bridgelib.config import DATA_DIR, REPO_ROOT, get_config
from bridgelib.datasets import MINI_CLASSES
from bridgelib.manifest import read_manifest


def test_the_paper_is_cited_as_the_arxiv_preprint_it_is():
    hits = subprocess.run(["git", "grep", "-n", "ICLR", "--", "README.md", "docs"], cwd=REPO_ROOT,
                          capture_output=True, text=True).stdout.splitlines()
    assert hits, "README and docs/paper.md say where the paper was submitted"
    for hit in hits:  # the only venue named is the one it was submitted to
        assert "submitted to ICLR 2024" in hit, hit
    readme = (REPO_ROOT / "README.md").read_text()
    bib = readme[readme.index("```bibtex"):].split("```")[1]
    assert "eprint" in bib and "2403.19866" in bib and "booktitle" not in bib
    assert "up to 30%" in readme and "--match-compute" in readme


# ---- a synthetic set: folder order = label order, and a card HF datasets applies ------------
# Not in alphabetical order: slug folders alone would sort "digit_one" before "letter_a".
CLASSES = ["letter a", "digit seven", "digit one"]


@pytest.fixture(scope="module")
def synthetic_set(tiny_model, tmp_path_factory):
    from bridgelib.generate import generate_synthetic_set
    cfg = get_config("mini", **{"generation.model": str(tiny_model), "generation.steps": 1})
    return generate_synthetic_set(cfg, tmp_path_factory.mktemp("syn") / "set", per_class=2,
                                  class_names=CLASSES, progress_bar=False)


def test_torchvision_imagefolder_gives_the_manifests_labels(synthetic_set):
    from torchvision.datasets import ImageFolder
    rows = read_manifest(synthetic_set)
    folder = ImageFolder(str(synthetic_set))
    assert sorted(folder.class_to_idx.values()) == list(range(len(CLASSES)))
    by_file = {Path(p).relative_to(synthetic_set).as_posix(): y for p, y in folder.samples}
    assert {f: by_file[f] for f in rows.file_name} == dict(zip(rows.file_name, rows.label))
    assert [folder.class_to_idx[f.split("/")[0]] for f in rows.file_name] == rows.label.tolist()


def test_hf_datasets_reads_label_as_a_classlabel_with_the_manifests_names(synthetic_set, tmp_path):
    datasets = pytest.importorskip("datasets")  # a dev dependency (pyproject's dev extras)
    rows = read_manifest(synthetic_set)
    names = rows.drop_duplicates("label").sort_values("label").class_name.tolist()
    assert names == CLASSES
    # the folder as a dataset: its card's features apply (as on the Hub)
    ds = datasets.load_dataset(str(synthetic_set), split="train", cache_dir=str(tmp_path))
    assert isinstance(ds.features["label"], datasets.ClassLabel)
    assert ds.features["label"].names == names
    assert [ds.features["label"].int2str(y) for y in ds["label"]] == ds["class_name"]
    assert sorted(zip(ds["label"], ds["seed"])) == sorted(zip(rows.label, rows.seed))
    # the imagefolder builder with data_dir reads metadata.jsonl only (no card): same labels
    plain = datasets.load_dataset("imagefolder", data_dir=str(synthetic_set), split="train",
                                  cache_dir=str(tmp_path))
    assert sorted(zip(plain["label"], plain["seed"])) == sorted(zip(rows.label, rows.seed))


def test_the_card_yaml_is_what_the_hub_reads(synthetic_set):
    from huggingface_hub import DatasetCard
    card = DatasetCard.load(synthetic_set / "README.md").data.to_dict()
    (label,) = [f for f in card["dataset_info"]["features"] if f["name"] == "label"]
    assert label["dtype"]["class_label"]["names"] == {str(i): n for i, n in enumerate(CLASSES)}
    assert card["configs"][0]["features"] == card["dataset_info"]["features"]
    assert "image-classification" in card["task_categories"]


def test_a_sweeps_subset_of_a_set_keeps_its_card(synthetic_set, tmp_path):
    from bridgelib.manifest import synthetic_subset
    sub = synthetic_subset(synthetic_set, 1, tmp_path / "sub")
    assert (sub / "README.md").read_bytes() == (synthetic_set / "README.md").read_bytes()


def test_a_set_written_with_slug_folders_stays_readable_and_resumes_as_one(tiny_model, tmp_path):
    """Sets written before the label index led the folder names: read as before, and a rerun
    that extends one keeps its folders (one set, not two layouts)."""
    from bridgelib.folders import load_image_folder
    from bridgelib.generate import generate_synthetic_set
    from bridgelib.manifest import legacy_class_folders, own_files
    cfg = get_config("mini", **{"generation.model": str(tiny_model), "generation.steps": 1})
    out = generate_synthetic_set(cfg, tmp_path / "old", per_class=1, class_names=CLASSES,
                                 progress_bar=False)
    legacy = legacy_class_folders(CLASSES)
    rows = read_manifest(out)  # rewrite it as the old code laid it out
    for row in rows.itertuples():
        folder, name = row.file_name.split("/")
        (out / legacy[row.label]).mkdir(exist_ok=True)
        (out / folder / name).rename(out / legacy[row.label] / name)
        (out / folder).rmdir()
    rows["file_name"] = [f"{legacy[y]}/{f.split('/')[1]}" for y, f in zip(rows.label, rows.file_name)]
    (out / "metadata.jsonl").write_text(rows.to_json(orient="records", lines=True))
    (out / "README.md").unlink()
    old = load_image_folder(out, 32, CLASSES)
    assert old.class_names == CLASSES and sorted(old.labels.tolist()) == [0, 1, 2]
    generate_synthetic_set(cfg, out, per_class=2, class_names=CLASSES, progress_bar=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(legacy)
    assert len(read_manifest(out)) == 6 and "named by class alone" in (out / "README.md").read_text()
    assert len(own_files(out)) == 6 + 3  # every image, run.json, metadata.jsonl, the card


# ---- the shipped models: cards the Hub reads, and the libraries that load them ---------------
@pytest.mark.parametrize("folder, library, task", [
    ("mini-generator", "diffusers", "text-to-image"),
    ("mini-judge", "timm", "image-classification"),
    ("mini-backbone", "timm", "image-classification")])
def test_every_shipped_model_has_a_card_the_hub_reads(folder, library, task):
    from huggingface_hub import ModelCard
    card = ModelCard.load(DATA_DIR / folder / "README.md")
    assert (card.data.library_name, card.data.pipeline_tag, card.data.license) == (library, task, "mit")
    assert "bridgelib" in card.data.tags
    assert "## Training" in card.text and "bridge mini build --only" in card.text  # data, build


def test_the_cards_are_what_the_build_writes():
    """A rebuild writes the same cards: they are made from the manifests, not edited by hand."""
    from bridgelib.mini_build.backbone import classifier_card
    from bridgelib.mini_build.build import model_card
    gen = DATA_DIR / "mini-generator"
    assert (gen / "README.md").read_text() == model_card(json.loads((gen / "manifest.json").read_text()))
    for kind in ("judge", "backbone"):
        folder = DATA_DIR / f"mini-{kind}"
        assert (folder / "README.md").read_text() == \
            classifier_card(json.loads((folder / "manifest.json").read_text()))


def test_plain_timm_loads_the_shipped_judge_as_bridgelib_does():
    import timm
    import torch

    from bridgelib.models import load_judge
    model = timm.create_model(f"local-dir:{DATA_DIR / 'mini-judge'}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == list(MINI_CLASSES)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), load_judge()(x))


# ---- statistics: pytorch-fid's Fréchet distance, scipy's BCa bootstrap -----------------------
def test_frechet_distance_is_fids_formula():
    from bridgelib.metrics import frechet_from_moments
    # |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) = 1 + 10 - 2 (2 + 2)
    assert frechet_from_moments([0, 0], np.diag([1.0, 4.0]), [1, 0], np.diag([4.0, 1.0])) \
        == pytest.approx(3.0)


def test_frechet_distance_of_singular_covariances():
    """Fewer images than features and a feature that never varies (a dead ReLU unit): both
    covariances are singular. The distance stays finite, real and near 0 for two draws of
    one distribution, and far from 0 for a shifted one."""
    from bridgelib.metrics import frechet_distance
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 20)), rng.normal(size=(12, 20))
    a[:, 3] = b[:, 3] = 1.0
    assert np.linalg.matrix_rank(np.cov(a, rowvar=False)) < 20
    with pytest.warns(UserWarning, match="singular; adding 1e-06"):  # pytorch-fid's retry
        same, shifted = frechet_distance(a, b), frechet_distance(a, b + 3.0)
    assert np.isfinite(same) and isinstance(same, float)
    d = b.mean(0) - a.mean(0)
    assert shifted - same == pytest.approx(((d + 3) ** 2 - d ** 2).sum(), rel=1e-6)  # means only


def test_a_singular_product_is_retried_with_eps_as_pytorch_fid_does(monkeypatch):
    from scipy import linalg

    from bridgelib.metrics import FRECHET_EPS, frechet_from_moments
    s1, s2 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])  # their product is the zero matrix
    real_sqrtm, calls = linalg.sqrtm, []

    def sqrtm(m):  # as scipy's can on a singular product: not finite
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)
    monkeypatch.setattr(linalg, "sqrtm", sqrtm)
    with pytest.warns(UserWarning, match="singular.*adding 1e-06"):
        value = frechet_from_moments([0, 0], s1, [0, 0], s2)
    offset = np.eye(2) * FRECHET_EPS
    assert np.allclose(calls[1], (s1 + offset) @ (s2 + offset))
    assert value == pytest.approx(2.0, abs=1e-2)


def test_a_large_imaginary_part_is_refused_in_one_line(monkeypatch):
    from scipy import linalg

    from bridgelib.metrics import frechet_from_moments
    monkeypatch.setattr(linalg, "sqrtm", lambda m: np.eye(2) * (1 + 0.5j))
    with pytest.raises(ValueError, match=r"imaginary part of 0\.5 .*more images than features") as e:
        frechet_from_moments([0, 0], np.eye(2), [0, 0], np.eye(2))
    assert "\n" not in str(e.value)
    monkeypatch.setattr(linalg, "sqrtm", lambda m: np.eye(2) * (1 + 1e-6j))  # noise: dropped
    assert frechet_from_moments([0, 0], np.eye(2), [0, 0], np.eye(2)) == pytest.approx(0.0)


def test_the_bootstraps_distance_is_frechet_distance_on_every_kind_of_resample():
    from bridgelib.metrics import _WeightedMoments, frechet_distance
    rng = np.random.default_rng(1)
    a, b, r = (rng.normal(size=(40, 5)) + s for s in (0.5, 0.0, 10.0))  # r far from 0: centring
    m, whole = _WeightedMoments(a, b, r), np.arange(40)
    for i, j, k in [(whole, whole, whole), (np.delete(whole, 3), whole, whole),
                    (whole, whole, np.delete(whole, 7)),
                    tuple(rng.integers(40, size=40) for _ in range(3))]:
        assert m.difference(i, j, k) == pytest.approx(
            frechet_distance(a[i], r[k]) - frechet_distance(b[j], r[k]), rel=1e-9)


def test_intervals_are_scipys_bca_with_the_method_recorded():
    from scipy.stats import bootstrap

    from bridgelib.metrics import bootstrap_interval
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=50), rng.normal(size=50) + 1
    diff = lambda a, b, axis: a.mean(axis) - b.mean(axis)  # noqa: E731
    ours = bootstrap_interval(diff, (x, y), paired=True, vectorized=True, seed=5)
    theirs = bootstrap((x, y), diff, paired=True, vectorized=True, n_resamples=2000,
                       method="BCa", rng=np.random.default_rng(5)).confidence_interval
    assert (ours["low"], ours["high"]) == (theirs.low, theirs.high)
    assert (ours["method"], ours["n_resamples"], ours["paired"]) == ("BCa", 2000, True)
    same = bootstrap_interval(diff, (x, x.copy()), paired=True, vectorized=True)
    assert same["low"] == same["high"] == 0.0 and "degenerate" in same["method"]


def test_the_calibration_writes_bca_intervals_and_the_world_records_each_method():
    from bridgelib.mini_build.calibrate import gap_intervals
    rng = np.random.default_rng(3)
    real, template, dsi = (rng.normal(size=(60, 4)) + s for s in (0.0, 1.0, 0.2))
    ci = gap_intervals(real, template, dsi, rng.random(120) < 0.9, rng.random(120) < 0.6)
    for record in ci.values():
        assert (record["method"], record["n_resamples"]) == ("BCa", 2000)
        assert record["low"] < record["high"] and "resampled" in record
    assert ci["frechet"]["low"] > 0  # the template set is the farther one
    world = json.loads((DATA_DIR / "mini-world.json").read_text())
    for measure in ("frechet", "domain_accuracy"):
        method = world["dsi"][measure]["ci95_method"]
        assert {"method", "n_resamples", "library", "resampled"} <= set(method), measure
