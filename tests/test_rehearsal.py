"""The rehearsal (issue 16): every course notebook under papermill in the `workshop` and `paper`
profiles, offline, against stand-ins with the real classes and on-disk layouts.

The stand-ins are built here, once per session, in a tmp folder: a random-weight Stable
Diffusion pipeline in the hub's folder layout, with fp16 variant files and SD's 77-token prompts
(conftest's `sd_stand_in`); Oxford-IIIT Pets (the workshop's dataset) and FGVC-Aircraft (the
paper's) in torchvision's layouts with their real class names, a few small JPEGs per class; and
a timm resnet18 state dict as a local safetensors file. The notebooks get them through their parameters (DATA_ROOT,
GENERATOR, BACKBONE_WEIGHTS) and small sizes through OVERRIDES and their own size parameters;
only ids, paths and sizes differ from a real run. Every output goes to tmp folders: runs, sets
and reports through the notebooks' folder parameters, caches through $BRIDGELIB_CACHE.

What it proves: every cell runs in those profiles, through the real classes (timm, diffusers,
torchvision's dataset readers). What it does not: real weights, a GPU, fp16 on CUDA, downloads,
or any accuracy (the mini world's calibrated checks are skipped there, each with one line).
Run it alone with `make rehearse`; `make test` runs it with the unit tests.
"""
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bridgelib.config import REPO_ROOT

pytestmark = pytest.mark.rehearsal

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PROFILES = ("workshop", "paper")

# Oxford-IIIT Pets' 37 breeds as its file names spell them (cats capitalised), in label order.
PETS = ("Abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle Bengal Birman "
        "Bombay boxer British_Shorthair chihuahua Egyptian_Mau english_cocker_spaniel "
        "english_setter german_shorthaired great_pyrenees havanese japanese_chin keeshond "
        "leonberger Maine_Coon miniature_pinscher newfoundland Persian pomeranian pug Ragdoll "
        "Russian_Blue saint_bernard samoyed scottish_terrier shiba_inu Siamese Sphynx "
        "staffordshire_bull_terrier wheaten_terrier yorkshire_terrier").split()
# FGVC-Aircraft's 100 variants (fgvc-aircraft-2013b/data/variants.txt), one per line there.
AIRCRAFT = [
    "707-320", "727-200", "737-200", "737-300", "737-400", "737-500", "737-600", "737-700",
    "737-800", "737-900", "747-100", "747-200", "747-300", "747-400", "757-200", "757-300",
    "767-200", "767-300", "767-400", "777-200", "777-300", "A300B4", "A310", "A318", "A319",
    "A320", "A321", "A330-200", "A330-300", "A340-200", "A340-300", "A340-500", "A340-600",
    "A380", "ATR-42", "ATR-72", "An-12", "BAE 146-200", "BAE 146-300", "BAE-125",
    "Beechcraft 1900", "Boeing 717", "C-130", "C-47", "CRJ-200", "CRJ-700", "CRJ-900",
    "Cessna 172", "Cessna 208", "Cessna 525", "Cessna 560", "Challenger 600", "DC-10", "DC-3",
    "DC-6", "DC-8", "DC-9-30", "DH-82", "DHC-1", "DHC-6", "DHC-8-100", "DHC-8-300", "DR-400",
    "Dornier 328", "E-170", "E-190", "E-195", "EMB-120", "ERJ 135", "ERJ 145",
    "Embraer Legacy 600", "Eurofighter Typhoon", "F-16A/B", "F/A-18", "Falcon 2000",
    "Falcon 900", "Fokker 100", "Fokker 50", "Fokker 70", "Global Express", "Gulfstream IV",
    "Gulfstream V", "Hawk T1", "Il-76", "L-1011", "MD-11", "MD-80", "MD-87", "MD-90",
    "Metroliner", "Model B200", "PA-28", "SR-20", "Saab 2000", "Saab 340", "Spitfire", "Tornado",
    "Tu-134", "Tu-154", "Yak-42"]
TRAIN, TEST = 4, 2  # images per class and split: notebook 01 shows 4 per class
DATASETS = {"workshop": "pets", "paper": "aircraft"}  # each profile's default dataset

# Only sizes: 32 px everywhere, one epoch per stage, two sampler and two inversion steps.
OVERRIDES = {"image_size": 32, "generation.resolution": 32, "generation.steps": 2,
             "train.real.epochs": 1, "train.synthetic.epochs": 1,
             "invert.steps": 2, "invert.batch_size": 2, "invert.checkpoint_every": 1}
SIZES = {  # each notebook's own size parameters, and its output folders (made absolute below)
    "01": {"SHOTS": 2, "SWEEP_SHOTS": [1, 2], "RUNS_DIR": "runs"},
    "02": {"PER_CLASS": 2, "GUIDANCE_GRID": [2.0, 3.0], "STEPS_GRID": [2], "SWEEP_PER_CLASS": 1,
           "OUT_DIR": "synthetic"},
    "03": {"SHOTS": 1, "PER_CLASS": 2, "RUNS_DIR": "runs"},
    "04": {"PER_CLASS": 2, "DEMO_STEPS": 2},
    "05": {"SHOTS": 1, "LIVE_PER_CLASS": [1, 2], "RUNS_DIR": "runs"},
    "06": {"REPORT_DIR": "report"},
    "07": {"INVERT_STEPS": 2, "PER_CLASS": 2, "WORK_DIR": "work"},
}
FOLDERS = ("RUNS_DIR", "OUT_DIR", "REPORT_DIR", "WORK_DIR")


def _jpg(path: Path, rng, label: int) -> None:
    """A small non-square JPEG whose colour follows its class (decoding and cropping run as on
    real photos; nothing here is meant to be learnable)."""
    hue = np.array([label * 53 % 256, label * 97 % 256, label * 29 % 256], np.uint8)
    img = rng.integers(0, 40, (36, 44, 3), dtype=np.uint8) + hue // 2
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=80)


def make_pets(root: Path) -> Path:
    """torchvision's OxfordIIITPet layout: oxford-iiit-pet/images/<Breed>_<n>.jpg and
    annotations/{trainval,test}.txt lines `<image id> <class 1..37> <species 1 cat, 2 dog> <id>`."""
    rng, base = np.random.default_rng(0), root / "oxford-iiit-pet"
    for split, n, start in (("trainval", TRAIN, 1), ("test", TEST, 100)):
        lines = []
        for label, breed in enumerate(PETS):
            for i in range(start, start + n):
                _jpg(base / "images" / f"{breed}_{i}.jpg", rng, label)
                lines.append(f"{breed}_{i} {label + 1} {1 if breed[0].isupper() else 2} 1")
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_aircraft(root: Path) -> Path:
    """torchvision's FGVCAircraft layout: fgvc-aircraft-2013b/data/ with images/<id>.jpg,
    variants.txt and images_variant_{trainval,test}.txt lines `<id> <variant>`."""
    rng, data = np.random.default_rng(1), root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(AIRCRAFT) + "\n")
    image_id = 1000000
    for split, n in (("trainval", TRAIN), ("test", TEST)):
        lines = []
        for label, variant in enumerate(AIRCRAFT):
            for _ in range(n):
                image_id += 1
                _jpg(data / "images" / f"{image_id:07d}.jpg", rng, label)
                lines.append(f"{image_id:07d} {variant}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_folder(root: Path) -> Path:
    """Notebook 07's "your own folder": root/train/<class>/ and root/test/<class>/, three breeds."""
    rng = np.random.default_rng(2)
    for split, n in (("train", TRAIN), ("test", TEST)):
        for label, breed in enumerate(("beagle", "pug", "samoyed")):
            for i in range(n):
                _jpg(root / split / breed / f"{breed}_{i}.jpg", rng, label)
    return root


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory, sd_stand_in):
    """Datasets, generator and backbone weights, built once; caches redirected to a tmp folder
    and the kernels pointed at this checkout's package, for the whole rehearsal."""
    import timm
    from safetensors.torch import save_file
    root = tmp_path_factory.mktemp("rehearsal")
    torch.manual_seed(0)
    weights = root / "resnet18.safetensors"
    save_file(timm.create_model("resnet18").state_dict(), weights)
    paths = {"pets": make_pets(root / "pets"), "aircraft": make_aircraft(root / "aircraft"),
             "folder": make_folder(root / "my_pets"), "generator": sd_stand_in,
             "backbone": weights}
    saved = {k: os.environ.get(k) for k in ("BRIDGELIB_CACHE", "PYTHONPATH")}
    os.environ["BRIDGELIB_CACHE"] = str(root / "cache")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), saved["PYTHONPATH"]) if p)
    before = _outputs()
    yield paths
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    assert _outputs() == before, "the rehearsal wrote into the repository's outputs/"


def _outputs() -> set[str]:
    out = REPO_ROOT / "outputs"
    return {str(p) for p in out.rglob("*")} if out.is_dir() else set()


def parameters(profile: str, notebook: Path, stand_ins: dict, work: Path) -> dict:
    number = notebook.name[:2]
    params = {"PROFILE": profile, "GENERATOR": str(stand_ins["generator"]),
              "BACKBONE_WEIGHTS": str(stand_ins["backbone"]), "OVERRIDES": OVERRIDES,
              **SIZES[number]}
    if number == "07":
        params["DATA_DIR"] = str(stand_ins["folder"])
    else:
        params["DATA_ROOT"] = str(stand_ins[DATASETS[profile]])
    for key in FOLDERS:
        if key in params:
            params[key] = str(work / params[key])
    return params


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
@pytest.mark.parametrize("profile", PROFILES)
def test_notebook_runs_offline_in_profile(profile, notebook, stand_ins, tmp_path):
    import papermill as pm
    params = parameters(profile, notebook, stand_ins, tmp_path)
    t0 = time.perf_counter()
    pm.execute_notebook(str(notebook), str(tmp_path / notebook.name), parameters=params,
                        kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
                        execution_timeout=600)
    print(f"{profile} {notebook.name}: {time.perf_counter() - t0:.1f} s")
