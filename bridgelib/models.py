"""Classifier backbones (timm), the head re-initialisation of bridged transfer, and what a
classifier is used for once trained: logits and accuracy on an ImageSet, and the mini world's
content judge.

The `paper` profile loads timm's ImageNet weights. The `mini` profile loads the small backbone
this project pretrains on font glyphs of letters and symbols (`bridge mini build --only
backbone`), verified against the sha256 in its manifest before use. `backbone_weights` may also
name a local safetensors file of a timm model's state dict (`safetensors.torch.save_file(
timm.create_model(name).state_dict(), path)`): your own copy of the hub's weights, offline.

Used through transfer (notebooks 01, 03, 07) and metrics (the judge, notebook 02).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import nn

from bridgelib.config import DATA_DIR, Config, get_config
from bridgelib.files import atomic_write_bytes, read_json, resolve_device, sha256_file

# Heavy third-party modules (timm) are imported inside the functions that use them, so that
# `import bridgelib` and `bridge --help` do not load them.

if TYPE_CHECKING:
    from bridgelib.data import ImageSet

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
# A run's fine-tuned classifier (train_run): RUN_DIR/classifier, timm's own `save_for_hf` layout,
# so `timm.create_model("local-dir:RUN_DIR/classifier", pretrained=True)` loads it with no code of
# ours (and `timm.models.push_to_hf_hub` publishes it).
CLASSIFIER_DIR = "classifier"
CLASSIFIER_FILES = ("config.json", "model.safetensors")  # all that save_for_hf writes there
# Written by runs before the timm layout (RUN_DIR/classifier.safetensors + classifier.json): read
# still by load_classifier, never written.
LEGACY_CLASSIFIER_FILE = "classifier.safetensors"
LEGACY_CLASSIFIER_CONFIG = "classifier.json"
JUDGE_DIR = "mini-judge"         # data/mini-judge: reads the garment in any look (mini_build/backbone.py)
REBUILD_HINT = "rebuild it with `bridge mini build --only backbone`"
FILE_HINT = ("expected a safetensors file of timm.create_model({arch!r}).state_dict() "
             "(safetensors.torch.save_file)")


class WeightsError(RuntimeError):
    """Shipped weights are missing or do not match their manifest's checksum."""


def create_classifier(cfg: Config, num_classes: int | None, pretrained: bool = True) -> nn.Module:
    """The profile's backbone with a fresh `num_classes` head; pretrained=False for a scratch
    baseline; num_classes=None keeps the pretraining head (e.g. for LEEP on source labels)."""
    import timm
    from_hub = pretrained and cfg.backbone_weights == "timm"
    state = load_backbone_weights(cfg.backbone_weights, cfg.backbone) \
        if pretrained and not from_hub else None
    if num_classes is None:
        num_classes = len(state["fc.bias"]) if state is not None and "fc.bias" in state else 1000
        keep_head = True
    else:
        keep_head = False
    kwargs = {} if from_hub and keep_head else {"num_classes": num_classes}
    model = timm.create_model(cfg.backbone, pretrained=from_hub, **kwargs, **cfg.backbone_kwargs)
    if state is not None:
        head = model.default_cfg.get("classifier", "fc")
        body = state if keep_head else {k: v for k, v in state.items() if not k.startswith(head + ".")}
        hint = FILE_HINT.format(arch=cfg.backbone) if Path(cfg.backbone_weights).is_file() \
            else REBUILD_HINT
        try:
            missing, unexpected = model.load_state_dict(body, strict=False)
        except RuntimeError as e:  # shape mismatches raise even with strict=False
            raise WeightsError(f"weights in {cfg.backbone_weights!r} do not fit {cfg.backbone} "
                               f"({str(e).splitlines()[-1].strip()}); {hint}") from None
        if unexpected or any(not k.startswith(head + ".") for k in missing):
            raise WeightsError(f"weights in {cfg.backbone_weights!r} do not fit {cfg.backbone} "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]}); {hint}")
    return model


def weights_source(cfg: Config, model: nn.Module) -> dict:
    """Which pretrained weights a run started from, for metrics.json: timm's resolved tag and hub
    id (timm resolves a bare "resnet18" to "resnet18.a1_in1k"), or the local file or folder."""
    pc = getattr(model, "pretrained_cfg", {}) or {}
    return {"backbone_weights": cfg.backbone_weights, "architecture": pc.get("architecture"),
            "tag": pc.get("tag"), "hf_hub_id": pc.get("hf_hub_id") if
            cfg.backbone_weights == "timm" else None}


def load_backbone_weights(where: str | Path, architecture: str) -> dict[str, torch.Tensor]:
    """The state dict `backbone_weights` names: a safetensors file of a timm model's state dict,
    read as it is, or a shipped folder (model.safetensors + manifest.json, checksum-verified)."""
    path = Path(where).expanduser()
    if not path.is_file():
        return load_shipped_weights(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"backbone_weights={str(where)!r} is not a .safetensors file; "
                           f"{FILE_HINT.format(arch=architecture)}, 'timm' or a shipped folder")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise WeightsError(f"backbone_weights={str(where)!r} cannot be read ({why}); "
                           f"{FILE_HINT.format(arch=architecture)}") from None


def load_shipped_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Load `folder/model.safetensors` after checking its sha256 against `folder/manifest.json`."""
    folder = Path(folder)
    weights, manifest = folder / WEIGHTS_FILE, folder / MANIFEST_FILE
    if not weights.exists() or not manifest.exists():
        raise WeightsError(f"backbone weights {str(weights)!r} or its manifest is missing; {REBUILD_HINT}")
    expected = read_json(manifest, "weights manifest").get("sha256")  # one line if not an object
    actual = sha256_file(weights)
    if actual != expected:
        raise WeightsError(f"backbone weights {str(weights)!r} are corrupted (sha256 {actual[:12]}... "
                           f"!= manifest {str(expected)[:12]}...); {REBUILD_HINT}")
    return load_file(weights)


def reinit_head(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise the classifier head in place (bridged + reinit, bridged++).

    Why: after the synthetic stage the head is fitted to synthetic features; starting the real
    stage from a fresh head lets the real data set the decision boundaries, while the body keeps
    what the synthetic images taught it.
    """
    head = model.get_classifier()
    with torch.random.fork_rng(devices=[]):  # a fresh CPU head: same values on any device
        torch.manual_seed(seed)
        fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    with torch.no_grad():
        head.weight.copy_(fresh.weight)
        if head.bias is not None:
            head.bias.copy_(fresh.bias)
    return model


def head_parameters(model: nn.Module) -> set[str]:
    """Names of the classifier head's parameters (to tell body from head)."""
    prefix = model.default_cfg.get("classifier", "fc")
    return {n for n, _ in model.named_parameters() if n.startswith(prefix + ".")}


def input_stats(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std the backbone expects, shaped (1, 3, 1, 1)."""
    cfg = model.pretrained_cfg
    return (torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1),
            torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))


@torch.no_grad()
def predict(model: nn.Module, data: ImageSet, cfg: Config, batch_size: int = 512) -> torch.Tensor:
    """Logits for every image of `data`, shape (N, classes). A streamed set (`data.StreamSet`)
    is read from disk in batches by `cfg.num_workers` workers, unaugmented."""
    from bridgelib.data import StreamSet
    device = resolve_device(cfg.device)
    model.to(device).eval()
    mean, std = (t.to(device) for t in input_stats(model))
    if isinstance(data, StreamSet):
        batches = [range(i, min(i + batch_size, len(data))) for i in range(0, len(data), batch_size)]
        loader = data.loader(batches, "none", workers=cfg.num_workers,
                             pin_memory=device.type == "cuda")
        out = [model((x.to(device).float() / 255 - mean) / std).cpu() for x, _ in loader]
        return torch.cat(out) if out else torch.empty(0, 0)
    out = [model((data.images[i:i + batch_size].to(device).float() / 255 - mean) / std).cpu()
           for i in range(0, len(data), batch_size)]
    return torch.cat(out)


def evaluate(model: nn.Module, data: ImageSet, cfg: Config) -> dict:
    """Top-1 accuracy and per-class accuracy on `data`."""
    pred = predict(model, data, cfg).argmax(1)
    hit = (pred == data.labels).float()
    per_class = {name: hit[data.labels == c].mean().item()
                 for c, name in enumerate(data.class_names) if (data.labels == c).any()}
    return {"accuracy": hit.mean().item(), "per_class_accuracy": per_class}


def load_judge(folder: str | Path = DATA_DIR / JUDGE_DIR) -> nn.Module:
    """The mini world's garment judge, checksum-verified (see load_shipped_weights)."""
    state = load_shipped_weights(folder)
    model = create_classifier(get_config("mini"), 10, pretrained=False)
    model.load_state_dict(state)
    return model.eval()


def save_classifier(model: nn.Module, cfg: Config, class_names: list[str], out: str | Path
                    ) -> Path:
    """Write a fine-tuned classifier to `out/classifier` with timm's own `save_for_hf`
    (`config.json` + `model.safetensors`): `config.json` holds the architecture, `num_classes`,
    `label_names` (the class names, in label order), `model_args` and a `pretrained_cfg` with the
    run's input size, mean and std, plus `weights_sha256`. Plain timm loads it:
    `timm.create_model("local-dir:RUN_DIR/classifier", pretrained=True)` (strict loading).

    Written into a temp folder and renamed into place, so a killed run never leaves half a
    classifier; a previous one is replaced only if it holds nothing but these two files."""
    from timm.models import save_for_hf
    out = Path(out)
    final = out / CLASSIFIER_DIR
    check_classifier_folder(final)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{CLASSIFIER_DIR}.", suffix=".tmp"))
    try:
        save_for_hf(_export_model(model, cfg, len(class_names)), tmp,
                    model_config={"label_names": list(class_names)},
                    model_args=dict(cfg.backbone_kwargs), safe_serialization=True)
        config = json.loads((tmp / "config.json").read_text())
        config["weights_sha256"] = sha256_file(tmp / "model.safetensors")
        atomic_write_bytes(tmp / "config.json", (json.dumps(config, indent=2) + "\n").encode())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: give the usual folder mode
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=out, prefix=f".{CLASSIFIER_DIR}.old.", suffix=".tmp"))
            os.replace(final, old / CLASSIFIER_DIR)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        for name in (LEGACY_CLASSIFIER_FILE, LEGACY_CLASSIFIER_CONFIG):  # an older run's copy of
            (out / name).unlink(missing_ok=True)  # the classifier this one replaces: not kept beside
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def timm_config(model: nn.Module, cfg: Config, class_names: list[str]) -> dict:
    """The config.json timm's `save_for_hf` writes for `model` (a classifier of `cfg.backbone`
    over `class_names`, fed as `cfg` feeds it): what a folder needs beside its
    model.safetensors for `timm.create_model("local-dir:FOLDER", pretrained=True)`. Used for
    the shipped judge and backbone, whose weights are already on disk."""
    from timm.models import save_for_hf
    with tempfile.TemporaryDirectory() as tmp:
        save_for_hf(_export_model(model, cfg, len(class_names)), tmp,
                    model_config={"label_names": list(class_names)},
                    model_args=dict(cfg.backbone_kwargs), safe_serialization=True)
        return json.loads((Path(tmp) / "config.json").read_text())


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _export_model(model: nn.Module, cfg: Config, num_classes: int) -> nn.Module:
    """What is saved: the architecture plain timm builds from the config, holding the trained
    weights (strict: they must fit it), contiguous on the CPU (training leaves them channels-last,
    which safetensors refuses), with the run's pretrained_cfg. The trained model is untouched."""
    import timm
    export = timm.create_model(cfg.backbone, num_classes=num_classes, **cfg.backbone_kwargs)
    export.load_state_dict({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                           strict=True)
    export.pretrained_cfg = export.default_cfg = _export_cfg(model, cfg, num_classes)
    return export.eval()


def _export_cfg(model: nn.Module, cfg: Config, num_classes: int) -> dict:
    """The pretrained_cfg a fine-tuned classifier is shared with: what timm needs to build and
    feed it (architecture, first conv, classifier name, input size, mean, std), the source's
    licence only for timm's own hub weights, nothing about the source checkpoint's files."""
    pc = dict(model.pretrained_cfg)
    mean, std = input_stats(model)
    keep = {k: pc[k] for k in ("architecture", "first_conv", "classifier", "interpolation",
                               "fixed_input_size") if k in pc}
    if cfg.backbone_weights == "timm" and pc.get("license"):
        keep["license"] = pc["license"]  # fine-tuned from weights shared under this licence
    return {**keep, "custom_load": False, "num_classes": num_classes,
            "input_size": (3, cfg.image_size, cfg.image_size), "crop_pct": 1.0,
            "crop_mode": "center", "mean": tuple(mean.flatten().tolist()),
            "std": tuple(std.flatten().tolist())}


def check_classifier_folder(folder: Path) -> None:
    """`folder` may be replaced only if it is a classifier this package wrote."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise FileExistsError(f"{str(folder)!r} exists and is not a classifier folder that "
                              f"`bridge train` wrote; move it or choose another --out")
    foreign = sorted(p.name for p in folder.iterdir()
                     if p.name not in CLASSIFIER_FILES or p.is_symlink() or not p.is_file())
    if foreign:
        raise FileExistsError(f"{str(folder)!r} holds {foreign[0]!r}, which is not a file of the "
                              f"classifier `bridge train` writes ({', '.join(CLASSIFIER_FILES)}); "
                              f"move it or choose another --out")


def load_classifier(where: str | Path) -> nn.Module:
    """A classifier `bridge train` saved, in eval mode, from its run folder or `RUN/classifier`:
    timm's layout through timm itself (`local-dir:`), or the files runs wrote before it
    (classifier.safetensors + classifier.json), so old runs stay readable. Either way the
    model's pretrained_cfg carries the run's input size, mean, std and label_names."""
    import timm
    where = Path(where).expanduser()
    folder = where / CLASSIFIER_DIR if (where / CLASSIFIER_DIR / "config.json").is_file() else where
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    legacy = where / LEGACY_CLASSIFIER_CONFIG
    if not legacy.is_file() or not (where / LEGACY_CLASSIFIER_FILE).is_file():
        raise FileNotFoundError(
            f"{str(where)!r} holds no saved classifier; expected {CLASSIFIER_DIR}/config.json + "
            f"{CLASSIFIER_DIR}/model.safetensors (timm's layout, written by `bridge train`) or "
            f"{LEGACY_CLASSIFIER_FILE} + {LEGACY_CLASSIFIER_CONFIG} (older runs)")
    meta = json.loads(legacy.read_text())
    model = timm.create_model(meta["architecture"], num_classes=meta["num_classes"],
                              **meta.get("model_args", {}))
    model.load_state_dict(load_file(where / LEGACY_CLASSIFIER_FILE), strict=True)
    model.pretrained_cfg = {**model.pretrained_cfg, **meta["pretrained_cfg"],
                            "label_names": meta["label_names"], "num_classes": meta["num_classes"]}
    model.default_cfg = model.pretrained_cfg
    return model.eval()
