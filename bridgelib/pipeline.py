"""The diffusers text-to-image pipeline and the style token: one home for both.

`load_pipeline` loads `cfg.generation`'s StableDiffusionPipeline (scheduler, dtype, no safety
checker); `model_fingerprint` and `package_versions` name what drew a set or learned a token.

A style token is a word whose embedding row(s) are learned (DSI, `invert.py`). `save_style_token`
writes one; `read_style_token` reads and checks a file on its own, `check_style_token` against a
pipeline (before anything changes), `apply_style_token` puts it in; `load_style_token` does all
three. Every file diffusers' `load_textual_inversion` accepts is read:

- diffusers: one {token: tensor (num_vectors, width)} in a safetensors or torch file, which is
  what `bridge invert` writes (with safetensors metadata: token, base model, steps);
- AUTOMATIC1111 `.pt`: {"string_to_param": {"*": tensor}, "name": token, ...};
- kohya / AUTOMATIC1111 safetensors {"emb_params": tensor}, and a bare tensor saved with
  torch.save: neither names its token, so the caller does (`token=`, `--token NAME`).

`token=` renames any of them, as in diffusers. A file is refused in one line naming it, what it
holds and what is valid: several tensors, no token name, the wrong width for the text encoder,
NaN or infinite values, or a name the tokenizer already has as a word of its own.

Taught in notebooks 02, 04, 05, 06, 07.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from bridgelib.config import MINI_GENERATOR, Config
from bridgelib.files import (atomic_write_bytes, bf16_autocast, keep_freed_memory,
                             library_progress, resolve_device, sha256_file)
from bridgelib.models import WeightsError

__all__ = ["StyleToken", "apply_style_token", "check_style_token", "check_token_fits",
           "check_word", "held_token_ids",
           "load_pipeline", "load_style_token", "model_fingerprint", "nearest_words",
           "package_versions", "read_style_token", "save_style_token", "single_token_id"]

TOKEN_SUFFIXES = (".safetensors", ".bin", ".pt")
TOKEN_FILES = ("learned_embeds.safetensors", "learned_embeds.bin")  # diffusers' names in a folder
VALID_FILES = ("one {token: tensor} as `bridge invert` writes, an AUTOMATIC1111 .pt "
               "(string_to_param) or a kohya safetensors (emb_params)")


def load_pipeline(cfg: Config, device: str | torch.device | None = None):
    """The text-to-image pipeline of `cfg.generation`, on `device` (default: cfg.device).

    The safety checker is off on purpose: it blanks images it flags, which would silently put
    black images into a training set (Stable Diffusion's own docs show how to turn it back on).
    float16 is used on CUDA only (CPU half precision is slow or unsupported); attention is
    PyTorch SDPA, diffusers' default.
    """
    # diffusers is imported here, not at the top: it takes seconds (most in the pipeline
    # classes), and fingerprints, versions and token files need none of it
    from diffusers import StableDiffusionPipeline
    g = cfg.generation
    model = Path(g.model).expanduser()
    mini = cfg.profile == "mini" or model == MINI_GENERATOR
    if not model.exists() and (model.is_absolute() or g.model.startswith((".", "~"))):
        hint = "; build the mini generator with `bridge mini build`" if mini else ""
        raise FileNotFoundError(f"generator folder {g.model!r} does not exist{hint}")
    device = resolve_device(str(device or cfg.device))
    if device.type == "cpu":
        keep_freed_memory()
    dtype = getattr(torch, g.dtype) if device.type == "cuda" else torch.float32
    try:  # diffusers 0.36+ calls the argument `dtype` and warns about `torch_dtype`
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
        dtype_kw = {"dtype": dtype}
    except ImportError:
        dtype_kw = {"torch_dtype": dtype}
    variant = fp16_variant(g.model, dtype)

    def load(variant):
        with library_progress():
            return StableDiffusionPipeline.from_pretrained(
                str(model) if model.exists() else g.model, safety_checker=None,
                requires_safety_checker=False, variant=variant, **dtype_kw)
    try:
        try:
            pipe = load(variant)
        except (OSError, ValueError) as err:  # a hub model without fp16 files: its fp32 ones
            if variant is None or "variant" not in str(err):
                raise
            variant, pipe = None, load(None)
    except (OSError, ValueError, RuntimeError) as err:  # damaged weights, a wrong folder
        hint = "rebuild it with `bridge mini build --only generator`" if mini \
            else "check the id or folder" if model.exists() else (
                f"it is a hub id, fetched into the Hugging Face cache on first use (SD v1.5: "
                f"about {'2 GB in fp16' if variant else '4 GB in fp32'}), which needs the "
                f"network (HF_HUB_OFFLINE unset); or point --set generation.model=DIR "
                f"(notebooks: GENERATOR) at a local diffusers folder")
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise WeightsError(f"generator {g.model!r} cannot be loaded ({type(err).__name__}: "
                           f"{first}); {hint}") from None
    pipe.scheduler = _scheduler(g.scheduler, pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if g.compile:
        pipe.unet = compile_unet(pipe.unet, device)
    return pipe


def fp16_variant(model: str, dtype: torch.dtype) -> str | None:
    """'fp16' when the pipeline runs in float16 and the model has fp16 weight files (SD v1.5 on
    the hub does: 2 GB to download instead of 4 GB of fp32 weights cast after loading); else None.
    A local folder has them when any file is named `*.fp16.*`, as `save_pretrained(...,
    variant="fp16")` writes them."""
    if dtype != torch.float16:
        return None
    folder = Path(model).expanduser()
    if not folder.exists():
        return "fp16"  # a hub id: the repository lists its variants
    return "fp16" if any(".fp16." in p.name for p in folder.rglob("*")) else None


def hub_revision(model: str) -> str | None:
    """The commit of a hub model's cached snapshot (what was actually loaded), None for a local
    folder (model_fingerprint names that) or a model not in the cache."""
    if Path(model).expanduser().exists():
        return None
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(model, "model_index.json")
    return Path(found).parent.name if isinstance(found, str) else None


def compile_unet(unet, device: torch.device):
    """`torch.compile(unet)`, or the UNet as it is, with one warning, where it cannot compile:
    inductor builds C++ on the CPU, so a machine without a C++ compiler runs eager. A compiled
    UNet draws the same images up to float rounding (as another batch size does), so sets and
    their resume do not depend on it."""
    import shutil
    import warnings
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        warnings.warn("generation.compile: no C++ compiler (g++, c++, clang++) on PATH, which "
                      "torch.compile needs on the CPU; the UNet runs uncompiled", stacklevel=3)
        return unet
    return torch.compile(unet)


# How a pipeline draws images, as a synthetic set's record names it (a resume never mixes two).
# On a CPU with AMX (files.bf16_autocast) the UNet, VAE and text encoder keep fp32 weights and
# compute in bf16 under autocast (norms and softmax stay fp32): faster at equal quality, and
# batch-size invariant (README's "Measured speed", benchmarks/bench_quality.py).
# On CUDA the pipeline's own dtype (generation.dtype); on MPS fp32.
BF16_AUTOCAST = "bfloat16 autocast"


def pipeline_precision(cfg: Config, device: torch.device) -> str:
    """'float16'/'bfloat16'/'float32' (CUDA: generation.dtype), BF16_AUTOCAST or 'float32'."""
    if device.type == "cuda":
        return cfg.generation.dtype
    return BF16_AUTOCAST if device.type == "cpu" and bf16_autocast(device, cfg.precision) \
        else "float32"


def pipeline_autocast(precision: str):
    """The context a pipeline call runs in for `pipeline_precision`."""
    if precision == BF16_AUTOCAST:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _scheduler(name: str, current):
    """'dpmsolver++' (DPM-Solver++ multistep), 'default' (as saved) or a diffusers class name."""
    import diffusers  # only once a pipeline is loaded (see load_pipeline)
    if name == "dpmsolver++":
        return diffusers.DPMSolverMultistepScheduler.from_config(current.config,
                                                                 algorithm_type="dpmsolver++")
    if name in ("default", ""):
        return current
    cls = getattr(diffusers, name, None)
    valid = "valid: dpmsolver++, default, or a diffusers scheduler class such as DDIMScheduler"
    if cls is None or not name.endswith("Scheduler") or not hasattr(cls, "from_config"):
        raise ValueError(f"generation.scheduler={name!r} is invalid; {valid}")
    try:
        return cls.from_config(current.config)
    except Exception as err:  # noqa: BLE001 -- a class the name rule accepts but that is no sampler
        raise ValueError(f"generation.scheduler={name!r} cannot drive this pipeline "
                         f"({type(err).__name__}: {str(err)[:120]}); {valid}") from None


def model_fingerprint(model: str) -> str | None:
    """A short hash of a local model folder's weights (names, sizes, first MiB of each), so a
    rebuilt model never resumes a set drawn by the old one; None for hub ids."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        h.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Versions recorded next to every set: a different diffusers can draw different pixels."""
    found = {}
    for pkg in ("torch", "diffusers", "transformers", "bridgelib"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "not installed"
    return found


@dataclass(frozen=True, eq=False)
class StyleToken:
    """A style token as read: the word prompts use and its rows (num_vectors, width), as the
    file holds them; `vectors` None: a word the tokenizer already has, used as it is."""
    name: str
    vectors: torch.Tensor | None = None
    path: Path | None = None
    sha256: str | None = None
    format: str = "word"  # diffusers | a1111 | emb_params | tensor | word
    metadata: dict = field(default_factory=dict)  # a safetensors file's own metadata


def save_style_token(path: str | Path, token: str, vectors, base_model: str,
                     steps: int, real_per_class: int | None = None) -> str:
    """Write `token`'s rows as diffusers' learned_embeds.safetensors, {token: (n, width)} in
    float32, which `pipe.load_textual_inversion(path)` loads as is; its safetensors metadata
    holds the token, its vector count, the base model (a hub id, or a local folder's name: the
    file does not depend on where the repository lives), that model's fingerprint (empty for a
    hub id), the training steps and, when given, the most real images of one class it was
    learned on (`real_per_class`: a k-shot arm's token must show k). Atomic; the same rows give the same bytes. Returns sha256."""
    rows = torch.as_tensor(vectors).detach().cpu().float()
    rows = rows.reshape(-1, rows.shape[-1]).contiguous()
    fingerprint = model_fingerprint(str(base_model))
    meta = {"token": token, "num_vectors": str(len(rows)), "steps": str(steps),
            "base_model": Path(base_model).expanduser().name if fingerprint else str(base_model),
            "base_model_fingerprint": fingerprint or ""}
    if real_per_class is not None:
        meta["real_per_class"] = str(int(real_per_class))
    atomic_write_bytes(path, _sorted_header(save({token: rows}, metadata=meta)))
    return sha256_file(path)


def _sorted_header(raw: bytes) -> bytes:
    """safetensors writes metadata in hash order, which changes from run to run; sorted, the same
    token is the same file (its sha256 names cached sets and is checked when a set resumes)."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned, as safetensors writes it
    return len(text).to_bytes(8, "little") + text + raw[8 + n:]


def read_style_token(style_token: str | Path | None,
                     token: str | None = None) -> StyleToken | None:
    """A style token read and checked on its own: a token file (any format above; a folder:
    its learned_embeds file), or a word the tokenizer already has; None for None.
    `token`: the word prompts use, instead of the file's (needed by emb_params files)."""
    if style_token is None:
        if token is not None:
            raise ValueError(f"token={token!r} (--token) names the word of a style token file, "
                             f"but no style token was given; pass style_token=FILE "
                             f"(--style-token)")
        return None
    if token is not None:
        check_word(token, "token")
    path = Path(style_token).expanduser()
    if path.is_dir():
        found = [path / f for f in TOKEN_FILES if (path / f).is_file()]
        if not found:
            raise FileNotFoundError(f"style token folder {str(style_token)!r} holds no "
                                    f"{' or '.join(TOKEN_FILES)}")
        path = found[0]
    if not path.is_file():
        if path.suffix in TOKEN_SUFFIXES or os.sep in str(style_token):
            raise FileNotFoundError(f"style token file {str(style_token)!r} does not exist; "
                                    f"pass a learned_embeds.safetensors from `bridge invert`")
        if token is not None:
            raise ValueError(f"token={token!r} (--token) renames the word of a style token "
                             f"file, but {str(style_token)!r} is a word, not a file")
        return StyleToken(str(style_token))
    state, metadata = _read_file(path)
    fmt, name, vec = _unpack(path, state, token)
    where = f"style token {str(path)!r}"
    if not isinstance(vec, torch.Tensor) or not vec.is_floating_point() or vec.dim() not in (1, 2) \
            or vec.numel() == 0:
        what = f"a {vec.dtype} tensor of shape {tuple(vec.shape)}" if isinstance(
            vec, torch.Tensor) else f"a {type(vec).__name__}"
        raise ValueError(f"{where} holds {what} for {name!r}; expected a float tensor "
                         f"(num_vectors, width)")
    rows = vec.detach().reshape(-1, vec.shape[-1])
    if not torch.isfinite(rows).all():
        raise ValueError(f"{where} holds NaN or infinite values; learn it again (`bridge "
                         f"invert`, a lower --lr)")
    return StyleToken(name, rows, path, sha256_file(path), fmt, metadata)


def _read_file(path: Path) -> tuple[object, dict]:
    """A safetensors file's tensors and metadata, else (a .bin or .pt) a torch file's object,
    loaded as diffusers does: weights only, no code run."""
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types and OSError
        if path.suffix == ".safetensors":
            raise ValueError(f"style token {str(path)!r} is not a safetensors file "
                             f"({type(err).__name__}); expected a learned_embeds.safetensors "
                             f"from `bridge invert`") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True), {}
    except Exception as err:  # a damaged pickle can raise nearly anything
        raise ValueError(f"style token {str(path)!r} is neither a safetensors nor a torch file "
                         f"({type(err).__name__}); expected {VALID_FILES}") from None


def _unpack(path: Path, state, token: str | None) -> tuple[str, str, object]:
    """(format, the word prompts use, the tensor) of a token file's contents."""
    where = f"style token {str(path)!r}"
    if isinstance(state, torch.Tensor):
        fmt, name, vec = "tensor", None, state
    elif not isinstance(state, dict):
        raise ValueError(f"{where} holds a {type(state).__name__}; expected {VALID_FILES}")
    elif "string_to_param" in state:
        params = state["string_to_param"]
        if not isinstance(params, dict) or list(params) != ["*"]:
            held = list(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"{where} is an AUTOMATIC1111 embedding whose string_to_param "
                             f"holds {held}; expected one entry '*'")
        fmt, name, vec = "a1111", state.get("name"), params["*"]
    elif len(state) != 1:
        names = ", ".join(map(str, list(state)[:4])) + (", ..." if len(state) > 4 else "")
        raise ValueError(f"{where} holds {len(state)} tensors ({names}); expected {VALID_FILES}")
    else:
        key, vec = next(iter(state.items()))
        fmt, name = ("emb_params", None) if key == "emb_params" else ("diffusers", key)
    name = token if token is not None else name
    if not isinstance(name, str) or not name:
        kind = {"emb_params": "a kohya/AUTOMATIC1111 embedding (key 'emb_params')",
                "tensor": "a bare tensor"}.get(fmt, "an AUTOMATIC1111 embedding without a name")
        raise ValueError(f"{where} is {kind}, which names no token; pass the word prompts "
                         f"should use with token='<name>' (--token)")
    return fmt, name, vec


def check_word(word: str, what: str = "style token") -> None:
    """A token is one word: the tokenizer would split a name with spaces into several."""
    if not word or any(c.isspace() for c in word):
        raise ValueError(f"{what} {word!r} is invalid; expected one word such as '<s*>'")


def single_token_id(tokenizer, word: str, what: str) -> int:
    """The id of a word the tokenizer reads as one token (a split word has no one embedding)."""
    pieces = tokenizer.encode(word, add_special_tokens=False)
    if len(pieces) != 1:
        raise ValueError(f"{what} {word!r} is {len(pieces)} tokens for this tokenizer; "
                         f"choose a word that is a single token")
    return pieces[0]


def held_token_ids(tokenizer, name: str, n: int, what: str, fix: str) -> list[int] | None:
    """The ids of `name` (and name_1.. name_{n-1}, diffusers' multi-vector names) that the
    tokenizer already holds from an earlier load or run, else None; refused if `name` is one of
    the tokenizer's own words (its embedding would be overwritten) or held with another n."""
    names = [name] + [f"{name}_{i}" for i in range(1, n)]
    vocab = tokenizer.get_vocab()
    if name not in vocab:
        return None
    if name not in tokenizer.get_added_vocab():
        raise ValueError(f"{what} is already a token of the tokenizer's own vocabulary; using it "
                         f"would overwrite that token's embedding; {fix}")
    if not all(x in vocab for x in names) or f"{name}_{n}" in vocab:
        raise ValueError(f"the pipeline already holds token {name!r} with another number of "
                         f"vectors; load the pipeline afresh")
    return [vocab[x] for x in names]


def check_style_token(pipe, token: StyleToken) -> list[int] | None:
    """Refuse a token this pipeline cannot take, before anything changes; return the ids of the
    rows it already holds for it (a rerun in the same pipeline), else None."""
    tok = pipe.tokenizer
    if token.vectors is None:
        if token.name not in tok.get_vocab() and len(tok.tokenize(token.name)) != 1:
            raise ValueError(f"style token {token.name!r} is neither a file nor a token of the "
                             f"tokenizer")
        return None
    ids = held_token_ids(tok, token.name, len(token.vectors),
                         f"the token {token.name!r} of style token {str(token.path)!r}",
                         "name it with a new word such as token='<s*>' (--token)")
    width, hidden = token.vectors.shape[-1], pipe.text_encoder.config.hidden_size
    if width != hidden:
        model = pipe.name_or_path or type(pipe).__name__
        raise ValueError(f"style token {token.path} has width {width} but the text encoder of "
                         f"{model} expects {hidden}")
    _check_norm(pipe, token)
    return ids


# x the largest row norm of the embedding table: from 10x up a token drowns the prompt, whatever
# its length (docs/design.md, "Measurements behind design choices"). `bridge invert` keeps its
# token at 1.5x the mean row norm.
MAX_TOKEN_NORM = 10.0


def _check_norm(pipe, token: StyleToken) -> None:
    """A token whose vectors are far longer than any word's (finite but huge) takes over every
    prompt it is in (an all-black set): refused in one line with both norms. `bridge invert`
    caps its token at 1.5x the table's mean row norm."""
    table = pipe.text_encoder.get_input_embeddings().weight.detach().float()
    largest = table.norm(dim=1).max().item()
    norm = token.vectors.float().norm(dim=1).max().item()
    if norm > MAX_TOKEN_NORM * largest:
        raise ValueError(f"style token {str(token.path)!r} has a vector of norm {norm:.3g}, far "
                         f"outside the text encoder's embedding table (row norms up to "
                         f"{largest:.3g}); expected at most {MAX_TOKEN_NORM:g}x that "
                         f"({MAX_TOKEN_NORM * largest:.3g}): learn it again with `bridge invert`")


def check_token_fits(tokenizer, token: StyleToken, prompts: list[str]) -> None:
    """Refuse, before drawing, a token that falls off the tokenizer's limit in any prompt
    (many vectors, a long class name): the text encoder would never see it and the images
    would be drawn as without it, while the manifest records the full prompt."""
    n = 1 if token.vectors is None else len(token.vectors)
    limit = tokenizer.model_max_length
    for prompt in prompts:  # each vector is one token; "," stands for each (one token too)
        text = prompt.replace(token.name, " ".join([","] * n))
        length = len(tokenizer(text, truncation=False, verbose=False).input_ids)  # with BOS, EOS
        if length > limit:
            raise ValueError(f"prompt {prompt!r} is {length} tokens with the style token's {n} "
                             f"vector(s), beyond the tokenizer's {limit}: the token would be cut "
                             f"off and the images drawn without it; use a token of fewer "
                             f"vectors or shorter class names")


def apply_style_token(pipe, token: StyleToken) -> None:
    """Put the token's rows in the pipeline: added as diffusers' load_textual_inversion adds
    them, or, if the pipeline already holds the token (a rerun), written over its rows."""
    ids = check_style_token(pipe, token)
    if token.vectors is None:
        return
    if ids is None:
        pipe.load_textual_inversion({token.name: token.vectors})
        return
    emb = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        emb[ids] = token.vectors.to(emb.device, emb.dtype)


def load_style_token(path: str | Path, pipe, token: str | None = None) -> str:
    """Read a token file (any format above), check it against `pipe`, put it in; refused
    before any change. Returns the word prompts use for it."""
    style = read_style_token(path, token)
    apply_style_token(pipe, style)
    return style.name


def nearest_words(token_vector, tokenizer, text_encoder, k: int = 10, words=None):
    """The k vocabulary words whose input embedding is closest (cosine) to the learned vector.

    A readable hint of what S* encodes; only a hint: a style need not sit near any one word.
    Default candidates: whole-word tokens ('...</w>') of at least 2 letters. A token of several
    vectors (`invert.num_vectors`) is reported per vector: a `vector` column (0 for `<s*>`, 1
    for `<s*>_1`, ...) and k rows for each, since each vector learns a part of its own (their
    mean would hide one that did not move).
    """
    import pandas as pd  # a second to import, for this one table: loaded when it is asked for
    vecs = torch.as_tensor(token_vector).float().reshape(-1, text_encoder.config.hidden_size)
    for i, v in enumerate(vecs):
        norm = v.norm().item()
        if not math.isfinite(norm) or norm == 0:  # cosine would be 0 or NaN for every word
            which = f"vector {i} of the style token" if len(vecs) > 1 else "the style token's vector"
            raise ValueError(f"{which} has norm {norm}: it is "
                             f"{'not finite' if not math.isfinite(norm) else 'zero'}, so no word is "
                             f"nearer to it than another; relearn it with `bridge invert`")
    vocab = tokenizer.get_vocab()
    if words is None:
        pairs = [(w[:-4], i) for w, i in vocab.items()
                 if w.endswith("</w>") and len(w) >= 6 and w[:-4].isalpha()]
    else:
        pairs = [(w, single_token_id(tokenizer, w, "word")) for w in words]
    table = text_encoder.get_input_embeddings().weight.detach().float().cpu()
    emb = table[[i for _, i in pairs]]
    rows = []
    for i, v in enumerate(vecs):
        cos = torch.nn.functional.cosine_similarity(emb, v.cpu()[None], dim=1)
        top = torch.topk(cos, min(k, len(pairs)))
        rows += [{"vector": i, "word": pairs[j][0], "cosine": c}
                 for j, c in zip(top.indices.tolist(), top.values.tolist())]
    table = pd.DataFrame(rows, columns=["vector", "word", "cosine"])
    return table if len(vecs) > 1 else table.drop(columns="vector")
