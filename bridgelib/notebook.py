"""One-call notebook setup, the config a notebook's parameters ask for, and the small plots
every notebook uses.

Taught in notebooks 01, 02, 03, 04, 05, 06, 07.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bridgelib.files import progress_file, seed_everything, set_progress

if TYPE_CHECKING:
    from bridgelib.config import Config

# Heavy third-party modules (diffusers, transformers, timm, matplotlib, IPython, tqdm) are
# imported inside the functions that use them, so that `import bridgelib` and `bridge --help` do
# not load them.


# The libraries underneath warn about their own internals (a deprecated argument inside
# diffusers, a numpy protocol inside a scheduler, tqdm's "IProgress not found"): nothing a course
# reader can act on. Those are hidden by category *and* by the module that warns, never
# wholesale, so the project's own warnings (bridgelib.*: an unreadable image skipped, by name)
# and those of the reader's own cells still show.
QUIET_MODULES = (r"(torch|torchvision|diffusers|transformers|timm|huggingface_hub|accelerate|tqdm)"
                 r"(\.|$)")
QUIET_CATEGORIES = (FutureWarning, DeprecationWarning, UserWarning)


def quiet_library_warnings() -> None:
    """Hide the warnings of QUIET_MODULES in QUIET_CATEGORIES, tqdm's TqdmWarning and scipy's
    LinAlgWarning."""
    from scipy.linalg import LinAlgWarning
    from tqdm import TqdmWarning
    for category in QUIET_CATEGORIES:
        warnings.filterwarnings("ignore", category=category, module=QUIET_MODULES)
    warnings.filterwarnings("ignore", category=TqdmWarning)
    # metrics.frechet_distance takes the square root of a product of two covariance matrices
    # estimated from a few hundred feature vectors: they are near-singular, and scipy says so
    # ("Ill-conditioned matrix") on every call. The distance is still the one the style-gap
    # tables compare (its imaginary residue is dropped); the warning is nothing a reader can act on.
    warnings.filterwarnings("ignore", category=LinAlgWarning)


def setup_notebook(seed: int = 0, progress: bool | None = None) -> dict:
    """Seed everything, quiet the libraries' logs and warnings, set a plot style; returns versions
    to print.

    Progress bars stay on for people and go off under tests (BRIDGELIB_PROGRESS=0); under
    `make course` they go to its terminal (files.progress_file). Figures are drawn at twice their
    pixel density ("retina" PNGs), so they stay sharp on HiDPI screens.
    """
    import diffusers
    import huggingface_hub.utils
    import matplotlib.pyplot as plt
    import timm
    import transformers
    seed_everything(seed)
    set_progress(progress if progress is not None else os.environ.get("BRIDGELIB_PROGRESS") != "0")
    quiet_library_warnings()
    for name in ("diffusers", "transformers", "timm", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    diffusers.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    if progress_file():  # the libraries' own bars cannot follow ours to the file: off
        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()
    plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False})
    _show_bare_figures()
    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "timm": timm.__version__,
            "threads": torch.get_num_threads()}


def notebook_config(profile: str | None, data_root: str | None = None,
                    generator: str | None = None, backbone_weights: str | None = None,
                    download: bool = False, overrides: dict[str, Any] | None = None,
                    **fixed: Any) -> Config:
    """The config a notebook's parameters cell asks for, the one mapping every notebook uses:
    the profile's, then `fixed` (the notebook's own settings), then DATA_ROOT -> data_root,
    GENERATOR -> generation.model, BACKBONE_WEIGHTS -> backbone_weights (None: the profile's
    default), DOWNLOAD -> download, then OVERRIDES: any other fields by dotted name (e.g. small
    sizes for a rehearsal: {"image_size": 32, "train.real.epochs": 1}). A bad key or value is
    the config's one-line ConfigError."""
    from bridgelib.config import ConfigError, get_config
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"OVERRIDES={overrides!r} is invalid; expected a dict of dotted config "
                          f'fields, e.g. {{"image_size": 64}}')
    named = {"data_root": data_root, "generation.model": generator,
             "backbone_weights": backbone_weights, "download": download or None}
    chosen = {k: str(v) if k != "download" else v for k, v in named.items() if v is not None}
    return get_config(profile, **{**fixed, **chosen, **(overrides or {})})


def shipped_store_config(cfg: Config, store_dir) -> Config:
    """The config of the profile the results store in `store_dir` was built in
    (`store.describe_store`); when that is not `cfg`'s profile, one line says so: the notebook
    then shows that store beside live runs of its own profile."""
    from bridgelib.config import get_config
    from bridgelib.store import describe_store
    info = describe_store(store_dir)
    if info.profile != cfg.profile:
        print(f"note: the results store {str(store_dir)!r} was built in the {info.profile!r} "
              f"profile ({info.dataset}); the live runs here are {cfg.profile!r} "
              f"({cfg.dataset})")
    return get_config(info.profile)


def store_banner(cfg: Config, store_dir):
    """Say what the results store in `store_dir` is before a notebook shows its numbers: one
    line of `StoreInfo.summary`, its generator, then a note for each reason to read it with
    care (a provisional build, another generator than `cfg`'s). Returns its `StoreInfo`;
    `shipped_store_config` says when it was built in another profile."""
    from bridgelib.pipeline import model_fingerprint
    from bridgelib.store import describe_store
    info = describe_store(store_dir)
    print(f"results store: {info.summary()}")
    if info.generator:
        print(f"generator {info.generator} (weights {info.generator_fingerprint})")
    if info.provisional:
        print(f"NOTE: this store is PROVISIONAL (grid {info.grid!r}, {len(info.missing_runs)} of "
              f"its runs missing): read its verdicts as a demonstration; `make results` builds "
              f"the full one.")
    if info.generator_fingerprint and \
            info.generator_fingerprint != model_fingerprint(cfg.generation.model):
        print("NOTE: the store was drawn with another build of the generator than the one this "
              "notebook's live runs use.")
    return info


# The config fields a course reader acts on, in words (the full object prints 60 fields).
CONFIG_FIELDS = {
    "profile": "profile", "dataset": "real target dataset", "image_size": "image size (px)",
    "backbone": "backbone", "generation.model": "generator", "generation.guidance":
    "guidance scale", "generation.steps": "sampling steps", "train.real.epochs":
    "real stage: epochs", "train.real.lr": "real stage: learning rate", "train.synthetic.epochs":
    "synthetic stage: epochs", "train.mixup_alpha": "Mixup alpha (bridged++)",
    "invert.steps": "style-token steps (DSI)", "device": "device"}


def config_table(cfg: Config, fields: dict[str, str] | None = None):
    """The config fields that matter to a reader (CONFIG_FIELDS) as a two-column table;
    `print(cfg)` shows all of them."""
    import pandas as pd
    rows = {}
    for dotted, words in (fields or CONFIG_FIELDS).items():
        value: Any = cfg
        for part in dotted.split("."):
            value = getattr(value, part)
        rows[words] = Path(value).name if dotted == "generation.model" and Path(value).exists() \
            else value
    return pd.DataFrame({"value": rows}).rename_axis(f"config ({cfg.profile})").astype(str)


def order_shots(table):
    """A table with shot settings as columns (or index) in numeric order, "full" last: a
    pivot sorts mixed values as text (1, 16, 2, 4, 8, full)."""
    def key(v):
        return math.inf if str(v) == "full" else float(v)
    if table.columns.name == "shots":
        table = table[sorted(table.columns, key=key)]
    if table.index.name == "shots":
        table = table.loc[sorted(table.index, key=key)]
    return table


def drawn_as_own_class(images, real, cfg: Config):
    """Whether generated `images` show your classes, read from what they look like: each image
    is sorted to the nearest class mean of the `real` images (ImageSets with the same class
    order) in the profile's pretrained backbone features, after removing each set's mean feature
    (a difference of look shared by every class must not decide). Returns the share sorted to
    its own class, the one-sided binomial p of that many by chance, and the share per class
    (a few images each: a hint, not a verdict). Notebook 07 reads a folder's classes with it."""
    import pandas as pd
    from scipy.stats import binomtest

    from bridgelib.metrics import backbone_features
    n = len(real.class_names)
    ref = backbone_features(real.images, cfg)
    ref = ref - ref.mean(0)
    centres = np.stack([ref[real.labels.numpy() == c].mean(0) for c in range(n)])
    f = backbone_features(images.images, cfg)
    nearest = (((f - f.mean(0))[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    y = images.labels.numpy()
    hits = int((nearest == y).sum())
    per_class = pd.Series([float((nearest[y == c] == c).mean()) if (y == c).any() else np.nan
                           for c in range(n)], index=real.class_names)
    return hits / len(y), float(binomtest(hits, len(y), 1 / n, alternative="greater").pvalue), per_class


def mini_only(cfg: Config, what: str) -> bool:
    """True in the mini profile; elsewhere prints one line saying what is skipped and why, for a
    cell that reads the mini world's own files (its split, its judge, its backbone's glyphs) or
    checks a threshold calibrated on it."""
    if cfg.profile == "mini":
        return True
    print(f"skipped in profile {cfg.profile!r}: {what} (the mini world's only)")
    return False


def _show_bare_figures() -> None:
    """In a notebook, display every `Figure` as a retina PNG, the ones a cell returns included
    (bridgelib.report's figures are made without pyplot, and the inline backend registers no
    display for those by itself)."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    select_figure_formats(shell, {"retina"})
    try:  # pyplot's figures too, also after the inline backend configures itself again
        from matplotlib_inline.backend_inline import InlineBackend
        InlineBackend.instance().figure_formats = {"retina"}
    except ImportError:
        pass


def image_grid(images: torch.Tensor, titles: list[str] | None = None, ncols: int = 10,
               ax=None, title: str | None = None):
    """Show uint8 images (N, 3, H, W) in one tiled picture; returns the figure."""
    import matplotlib.pyplot as plt
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    h, w = images.shape[-2:]
    canvas = np.ones((nrows * (h + 2), ncols * (w + 2), 3), np.uint8) * 255
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = img.permute(1, 2, 0).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(ncols * 0.7, nrows * 0.75))
    ax.imshow(canvas)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if titles is not None:
        for i, t in enumerate(titles[:ncols]):
            ax.text(i * (w + 2) + w / 2, -3, t, ha="center", fontsize=7)
    if title:
        ax.set_title(title, pad=14 if titles else 6)
    return ax.figure


def per_class_examples(images: torch.Tensor, labels: torch.Tensor, per_class: int, num_classes: int):
    """The first `per_class` images of each class, ordered row by row (one column per class)."""
    idx = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(num_classes)]
    return torch.stack([images[idx[c][r]] for r in range(per_class) for c in range(num_classes)])
