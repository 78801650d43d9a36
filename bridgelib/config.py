"""Profiles: one validated config object for every stage of the method.

A profile only changes sizes, ids and paths; every stage runs the same code in every profile.
`mini` runs offline on a laptop CPU in minutes, `workshop` fits a two-hour session on one cloud
GPU, `paper` follows the paper (Stable Diffusion v1.5, ImageNet-pretrained timm models).
Values the paper does not give are marked "(ours)" with the reason.

Taught in notebooks 01, 02, 03, 04, 05, 06, 07.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridgelib.files import read_json, write_json
from bridgelib.prompts import TEMPLATES
from bridgelib.validation import (ANY_TEXT, BOOL, MAX_BATCH, MAX_EPOCHS, MAX_GUIDANCE, MAX_LR,
                                  MAX_PER_CLASS, MAX_SAMPLER_STEPS, MAX_SEED, MAX_SIZE,
                                  MAX_STAGE_LR, MAX_STEPS, MAX_WEIGHT_DECAY, TEXT, Rule, choice,
                                  integer, matches, number, optional)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
MINI_GENERATOR = DATA_DIR / "mini-generator"  # the shipped tiny generator (bridge mini build)
PROFILES = ("mini", "workshop", "paper")
PROFILE_ENV = "BRIDGELIB_PROFILE"
CACHE_ENV = "BRIDGELIB_CACHE"  # where caches go instead of cache/ (the rehearsal: a tmp folder)


def cache_root() -> Path:
    """The cache folder: $BRIDGELIB_CACHE, else cache/ of the repository."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "cache").expanduser()


class ConfigError(ValueError):
    """A bad configuration value; the message names the value and what is valid."""


@dataclass
class GenerationConfig:
    model: str                     # diffusers folder or hub id
    resolution: int                # pixels the generator draws at (then resized for training)
    steps: int = 20                # DPMSolver++ steps (ours: peers use 20-25)
    guidance: float = 3.0          # classifier-free guidance scale
    batch_size: int = 50
    scheduler: str = "dpmsolver++"
    template: str = "single"
    negative_prompt: str = ""
    dtype: str = "float32"
    # torch.compile the UNet (opt-in): its compile time pays back over a store rebuild, not over a
    # notebook's few sets (README's "Measured speed")
    compile: bool = False


@dataclass
class StageConfig:
    """Hyperparameters of one fine-tuning stage (the paper gives none of them)."""
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 5e-4
    momentum: float = 0.9          # SGD with cosine decay, as peers use
    min_steps: int = 0             # few-shot sets are tiny: keep a floor on optimizer steps
    steps: int | None = None       # exactly this many optimizer steps, whatever the set's size


@dataclass
class TrainConfig:
    real: StageConfig
    synthetic: StageConfig
    mixup_alpha: float = 0.2       # Mixup in the synthetic stage of bridged++ (ours)
    match_compute: bool = False    # vanilla trains as many steps as bridged's two stages (fair budget)
    # mixed only: the real share of its training images, so of a batch on average (0.5: half
    # real). Not the mixing ratio (the store's `syn_per_real`, synthetic : real images), though
    # it sets one: a share f leaves 1/f - 1 synthetic per real. None: every real and every
    # synthetic image (the paper's mixed; its ratio is whatever the two sets' sizes make).
    mixed_real_fraction: float | None = None
    # mixed's budget: "bridged" = as many steps as bridged's two stages (same images seen);
    # "epochs" = the real stage's epochs over the union (each real image as many passes as vanilla)
    mixed_budget: str = "bridged"


@dataclass
class InvertConfig:
    token: str = "<s*>"
    initializer: str = "style"
    num_vectors: int = 1
    steps: int = 400
    lr: float = 5e-3
    batch_size: int = 16
    checkpoint_every: int = 100


@dataclass
class Config:
    profile: str
    dataset: str
    image_size: int                # classifier input size
    backbone: str                  # timm model name
    backbone_weights: str          # "timm" (hub weights), a shipped folder or a state-dict .safetensors
    generation: GenerationConfig
    train: TrainConfig
    invert: InvertConfig
    backbone_kwargs: dict = field(default_factory=dict)
    augment: str = "shift"         # batch augmentation: shift (glyphs: no flips) | crop-flip | none
    precision: str = "auto"        # auto: bf16 autocast where the chip has it (training; CPU generation) | fp32
    data_root: str = ""            # where registry datasets live (paper); $BRIDGELIB_DATA overrides
    download: bool = False         # let torchvision fetch a missing registry dataset into data_root
    device: str = "auto"           # auto (CUDA, else MPS, else CPU) | cpu | cuda[:N] | mps
    num_workers: int = 0           # DataLoader workers of a streamed set (data.STREAM_ABOVE_BYTES)
    seed: int = 0
    # The per-epoch test accuracy of history.csv is read on a fixed, class-balanced subset of
    # this many test images (None: all); the final test_acc always uses the whole test set.
    # Ten thousand test images per epoch would triple a mini run's time for a curve.
    monitor_images: int | None = 2000

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as JSON (atomically) next to an artifact."""
        return write_json(path, self.to_dict())

    def __str__(self) -> str:  # printable in a notebook
        return json.dumps(self.to_dict(), indent=2)


def _mini() -> Config:
    return Config(
        profile="mini", dataset="fashion-mnist", image_size=32,
        backbone="resnet10t", backbone_kwargs={"channels": [32, 64, 128, 256]},
        backbone_weights=str(DATA_DIR / "mini-backbone"),
        # 10 DPM-Solver++ steps (bf16 where the chip has it, `precision`): faster than 20 fp32
        # steps at equal recognisability and Fréchet distance (README's "Measured speed",
        # benchmarks/bench_quality.py)
        generation=GenerationConfig(model=str(MINI_GENERATOR), resolution=32, steps=10,
                                    batch_size=100),
        # Small sets at 32 px: few epochs of many small batches, floor of steps for 1-shot sets.
        train=TrainConfig(real=StageConfig(epochs=15, lr=0.05, batch_size=32, min_steps=100),
                          synthetic=StageConfig(epochs=4, lr=0.05, batch_size=64)),
        invert=InvertConfig(steps=400, lr=5e-3, batch_size=16, checkpoint_every=100),
    )


def _paper() -> Config:
    # The paper gives the generator (SD v1.5), the single and DSI templates, 1,000 images per
    # class, ResNet-18 and about 20k DSI iterations. Every other value below is ours (marked).
    return Config(
        profile="paper", dataset="aircraft",
        image_size=224,                 # ours: the backbones' ImageNet input size
        augment="crop-flip",            # ours: random-resized crop + flip, as peers use
        # torchvision's ImageNet weights, pinned by timm tag: what transfer papers of the paper's
        # time mean by a pretrained ResNet-18 (timm's bare "resnet18" is its own a1_in1k recipe)
        backbone="resnet18.tv_in1k", backbone_weights="timm",
        generation=GenerationConfig(
            model="stable-diffusion-v1-5/stable-diffusion-v1-5",
            resolution=512,             # ours: SD v1.5's native size, resized to image_size for training
            steps=25,                   # ours: DPM-Solver++ at 25 steps (peers use 20-25)
            guidance=2.0,               # ours: the paper finds results robust to it
            batch_size=16,              # ours: fits a 24 GB GPU in fp16
            dtype="float16"),           # ours: fp16 on CUDA; attention is PyTorch SDPA (diffusers default)
        train=TrainConfig(              # ours: SGD momentum 0.9, cosine decay, wd 5e-4 (StageConfig)
            real=StageConfig(epochs=50, lr=0.01, batch_size=64),
            synthetic=StageConfig(epochs=10, lr=0.01, batch_size=64)),
        invert=InvertConfig(
            steps=20000,                # the paper's "about 20k iterations"
            lr=5e-4, batch_size=8,      # ours: the low end of textual-inversion peers (5e-4..5e-3, 4-8)
            checkpoint_every=1000),
        num_workers=8, data_root=os.environ.get("BRIDGELIB_DATA", str(Path.home() / "datasets")),
    )


# Fine-tuning per backbone in the paper and workshop profiles (ours; the paper gives none):
# `get_config(profile, backbone=NAME)` applies the row before any other override.
PAPER_BACKBONES: dict[str, dict[str, Any]] = {
    "resnet18": {},                                  # the _paper() defaults above
    "resnet50": {},                                  # the same recipe; fits one 24 GB GPU at 224 px
    # ViTs: lower lr and no weight decay, as in ViT fine-tuning practice; ViT-L at half the batch.
    "vit_base_patch16_224": {"train.real.lr": 3e-3, "train.synthetic.lr": 3e-3,
                             "train.real.weight_decay": 0.0, "train.synthetic.weight_decay": 0.0},
    "vit_large_patch16_224": {"train.real.lr": 1e-3, "train.synthetic.lr": 1e-3,
                              "train.real.batch_size": 32, "train.synthetic.batch_size": 32,
                              "train.real.weight_decay": 0.0, "train.synthetic.weight_decay": 0.0},
}


def _workshop() -> Config:
    # The paper profile cut to two hours on one GPU: a small dataset, 256 px, a modest volume.
    cfg = _paper()
    cfg.profile, cfg.dataset = "workshop", "pets"
    cfg.generation.resolution, cfg.generation.steps = 256, 20
    cfg.train.real.epochs, cfg.train.synthetic.epochs = 15, 3
    cfg.invert.steps, cfg.invert.checkpoint_every = 2000, 500
    return cfg


_BUILDERS = {"mini": _mini, "workshop": _workshop, "paper": _paper}


def check_clone() -> None:
    """The package runs from a clone of its repository: the mini world's files ship in data/ and
    every cache is written to cache/, both beside the code. A wheel (`pip install .`, not -e)
    has neither, and would write caches into site-packages: refuse in one line instead."""
    if not (REPO_ROOT / "pyproject.toml").exists() or not DATA_DIR.is_dir():
        raise ConfigError(f"bridgelib runs from a clone of its repository (it reads data/ and "
                          f"writes cache/ beside the code), not from an installed copy in "
                          f"{str(REPO_ROOT)!r}: git clone the repository, then `make install` "
                          f"(or `pip install -e .`) inside it")


def get_config(profile: str | None = None, **overrides: Any) -> Config:
    """Resolve a profile (argument, else $BRIDGELIB_PROFILE, else `mini`) plus overrides.

    Overrides use dotted names for nested fields: `get_config("mini", **{"train.real.epochs": 5})`
    or plain ones for top-level fields: `get_config(seed=3)`. The result is checked field by
    field (RULES): a bad value is a one-line ConfigError naming the field and what is valid.
    """
    check_clone()
    profile = profile or os.environ.get(PROFILE_ENV) or "mini"
    if profile not in _BUILDERS:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    cfg = _BUILDERS[profile]()
    architecture = str(overrides.get("backbone", "")).split(".")[0]  # "resnet50.tv_in1k" too
    if profile != "mini" and architecture in PAPER_BACKBONES:
        overrides = {**PAPER_BACKBONES[architecture], **overrides}
    for key, value in overrides.items():
        _set(cfg, key, value)
    _validate(cfg)
    return cfg


def load_config(path: str | Path) -> Config:
    """Rebuild a Config from a JSON file written by `Config.save`."""
    d = read_json(path, "config file")  # a regular file holding a JSON object, else one line
    try:
        return _from_dict(d)
    except (TypeError, KeyError, AttributeError) as e:
        raise ConfigError(f"config file {str(path)!r} does not match this version: {e}") from None


def _from_dict(d: dict) -> Config:
    # Stages of configs saved before train.mixup_alpha became the one Mixup knob carry their own.
    stages = {k: StageConfig(**{f: v for f, v in d["train"].pop(k).items() if f != "mixup_alpha"})
              for k in ("real", "synthetic")}
    return Config(generation=GenerationConfig(**d.pop("generation")),
                  train=TrainConfig(**stages, **d.pop("train")),
                  invert=InvertConfig(**d.pop("invert")), **d)


# ---- field names and types: overrides and `bridge ... --set KEY=VALUE` -------------------------

@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    """A dataclass's fields in declaration order, with their types resolved from the strings
    that `from __future__ import annotations` leaves."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_names(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every settable field by its dotted name: image_size, ..., train.real.epochs, ..."""
    names = []
    for name, kind in _fields(cls or Config).items():
        names += field_names(kind, f"{prefix}{name}.") if dataclasses.is_dataclass(kind) \
            else [prefix + name]
    return names


def field_type(dotted: str) -> Any:
    """A field's declared type; an unknown name or a section is a ConfigError naming valid ones."""
    kind, parts = Config, dotted.split(".")
    for i, part in enumerate(parts):
        fields = _fields(kind) if dataclasses.is_dataclass(kind) else {}
        if part not in fields:
            section = ".".join(parts[:i])
            valid = f"fields of {section!r}" if section else "fields"
            raise ConfigError(f"unknown config field {dotted!r}{_nearest(dotted)}; valid {valid}: "
                              f"{', '.join(fields) or 'none, it is not a section'}")
        kind = fields[part]
    if dataclasses.is_dataclass(kind):
        raise ConfigError(f"config field {dotted!r} is a section; set its fields, e.g. {dotted}.<name>")
    return kind


def _nearest(dotted: str) -> str:
    """' (did you mean A, B?)' for a misspelt name, by the whole name, else by its last part
    (`momentum` is train.real.momentum or train.synthetic.momentum)."""
    names, last = field_names(), dotted.split(".")[-1]
    close = difflib.get_close_matches(dotted, names, n=3, cutoff=0.85) or [
        n for n in names if difflib.get_close_matches(last, [n.split(".")[-1]], cutoff=0.8)][:3]
    return f" (did you mean {', '.join(close)}?)" if close else ""


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_value(dotted: str, text: str) -> Any:
    """Command-line text as field `dotted`'s declared type (int, float, bool, str, dict, X | None).

    Text that does not parse is returned as it is: validation then refuses it with the field's
    own message (what is valid), the same as for a bad value given from Python."""
    kind, word = field_type(dotted), text.strip().lower()
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if word in ("none", "null"):
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if kind is bool:
            return True if word in _TRUE else False if word in _FALSE else text
        if kind in (int, float):
            return kind(text)
        if kind is dict:
            return json.loads(text)
    except ValueError:  # json.JSONDecodeError is one too
        pass
    return text


def _set(cfg: Config, dotted: str, value: Any) -> None:
    field_type(dotted)  # the name must be a field, not a section
    *sections, name = dotted.split(".")
    setattr(functools.reduce(getattr, sections, cfg), name, value)


# ---- validation: one rule per field, in one table (rule builders: bridgelib.validation) -------

_STAGE: dict[str, Rule] = {
    "epochs": integer(1, high=MAX_EPOCHS), "lr": number(0, MAX_STAGE_LR, open_low=True),
    "batch_size": integer(1, high=MAX_BATCH),
    "weight_decay": number(0, MAX_WEIGHT_DECAY), "momentum": number(0, 1), "min_steps": integer(0, high=MAX_STEPS),
    "steps": optional(integer(1, high=MAX_STEPS))}

# Every field of Config (tests/test_config.py checks none is missing), in declaration order.
RULES: dict[str, Rule] = {
    "profile": choice(*PROFILES),
    "dataset": TEXT,
    "image_size": integer(1, high=MAX_SIZE),
    "backbone": TEXT,
    "backbone_weights": TEXT,
    "generation.model": TEXT,
    "generation.resolution": integer(1, multiple_of=8, high=MAX_SIZE),  # the VAE downsamples by 8
    "generation.steps": integer(1, high=MAX_SAMPLER_STEPS),
    "generation.guidance": number(0, MAX_GUIDANCE, open_low=True),
    "generation.batch_size": integer(1, high=MAX_BATCH),
    # what pipeline._scheduler accepts; a class name that diffusers lacks is refused at load
    "generation.scheduler": matches(r"dpmsolver\+\+|default|[A-Za-z_]\w*Scheduler",
                                     "dpmsolver++, default or a diffusers scheduler class "
                                     "name such as DDIMScheduler"),
    "generation.template": choice(*TEMPLATES),
    "generation.negative_prompt": ANY_TEXT,
    "generation.dtype": choice("float32", "float16", "bfloat16"),
    "generation.compile": BOOL,
    **{f"train.{stage}.{name}": rule for stage in ("real", "synthetic")
       for name, rule in _STAGE.items()},
    "train.mixup_alpha": number(0, 100),  # Beta(a, a): above ~10 every mix is near half-half
    "train.match_compute": BOOL,
    "train.mixed_real_fraction": optional(number(0, 1, open_low=True)),
    "train.mixed_budget": choice("bridged", "epochs"),
    "invert.token": TEXT,
    "invert.initializer": TEXT,
    "invert.num_vectors": integer(1, high=64),
    "invert.steps": integer(1, high=MAX_STEPS),
    "invert.lr": number(0, MAX_LR, open_low=True),
    "invert.batch_size": integer(1, high=MAX_BATCH),
    "invert.checkpoint_every": integer(1, high=MAX_STEPS),
    "backbone_kwargs": ((lambda v: isinstance(v, dict)),
                        'a JSON object, e.g. {"channels": [32, 64]}'),
    "augment": choice("shift", "crop-flip", "none"),
    "precision": choice("auto", "fp32"),
    "data_root": ANY_TEXT,
    "download": BOOL,
    "device": matches(r"auto|cpu|cuda(:\d+)?|mps", "auto, cpu, cuda, cuda:N or mps"),
    "num_workers": integer(0, high=256),
    "seed": integer(0, high=MAX_SEED),
    "monitor_images": optional(integer(1, high=10_000_000)),
}


# Values that are not Config fields but enter the same way (function arguments, CLI flags).
PER_CLASS: Rule = integer(1, high=MAX_PER_CLASS)


def check_value(name: str, value: Any, rule: str | Rule) -> Any:
    """Validate one value given outside a Config (a function argument, a CLI flag) by a field's
    rule (`rule` a dotted field name) or a Rule; a bad one is the same one-line ConfigError,
    under the name the caller knows it by (`guidance=inf is invalid; expected ...`)."""
    ok, what = RULES[rule] if isinstance(rule, str) else rule
    if not ok(value):
        raise ConfigError(f"{name}={value!r} is invalid; expected {what}")
    return value


def _validate(cfg: Config) -> None:
    """Every field against its rule: the first bad one is a one-line ConfigError."""
    for name, (ok, what) in RULES.items():
        value = functools.reduce(getattr, name.split("."), cfg)
        if not ok(value):
            raise ConfigError(f"{name}={value!r} is invalid; expected {what}")
