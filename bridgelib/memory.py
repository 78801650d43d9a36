"""Caps that hold: what a run would allocate, estimated before it allocates anything, against
the memory it has (the GPU's on CUDA, else the machine's), in one line with both.

The config's own caps (`validation.MAX_SIZE`, ...) only stop typos; a size under its cap can
still ask for more memory than any machine has (image_size=4096 asked for one 30 GiB tensor
after a minute). `bridge train` and `bridge sweep` call `check_training_memory`, generation
calls `check_generation_memory`, before any data is read or model loaded.

No notebook teaches it: docs/bad_inputs.md lists what it refuses.
"""
from __future__ import annotations

from pathlib import Path

from bridgelib.config import Config, ConfigError
from bridgelib.validation import GEN_BYTES_PER_PIXEL

def _amount(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def host_memory() -> int | None:
    """The machine's memory as this process may use it: MemTotal, or a lower cgroup limit."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:")]
    except (OSError, ValueError, IndexError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            found.append(int(text))
    return min(found) if found else None


def memory_limit(device: str) -> tuple[int, str] | None:
    """(bytes, what they are) a run on `device` can hold: the GPU's memory where it runs on
    CUDA, else the machine's (host_memory); None where neither is known."""
    if device != "cpu" and not device.startswith("mps"):
        import torch
        if torch.cuda.is_available():
            index = int(device.split(":")[1]) if ":" in device else 0
            return torch.cuda.get_device_properties(index).total_memory, "memory of the GPU"
    have = host_memory()
    return (have, "memory of this machine") if have else None


def activation_bytes(cfg: Config, batch: int) -> int | None:
    """Bytes one training step of `cfg.backbone` keeps for its backward pass at `image_size`
    and `batch`: the tensors autograd saves, counted on PyTorch's meta device (shapes only,
    nothing computed or allocated). None where the model cannot be built that way."""
    import timm
    import torch
    try:
        with torch.device("meta"):
            model = timm.create_model(cfg.backbone, pretrained=False, num_classes=10,
                                      **cfg.backbone_kwargs)
    except TypeError as err:  # a foreign backbone_kwargs key
        raise ConfigError(f"backbone_kwargs={cfg.backbone_kwargs!r} is invalid for "
                          f"{cfg.backbone!r} ({err}); expected arguments of "
                          f"timm.create_model({cfg.backbone!r})") from None
    except Exception:  # noqa: BLE001 -- an unknown name: the run's own loader says so
        return None
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t
    try:
        x = torch.empty(2, 3, cfg.image_size, cfg.image_size, device="meta")  # BN needs 2
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.train()(x)
    except Exception:  # noqa: BLE001 -- e.g. a ViT at another size: its own error, later
        return None
    return saved[0] * batch // 2


def check_training_memory(cfg: Config) -> None:
    """Refuse, before any data is read or tensor allocated, a training step that cannot fit:
    the activations of the largest batch at image_size (`activation_bytes`) against the
    memory the run has (`memory_limit`), both in the one-line message."""
    batch = max(cfg.train.real.batch_size, cfg.train.synthetic.batch_size)
    need, limit = activation_bytes(cfg, batch), memory_limit(cfg.device)
    if need is None or limit is None:
        return
    if limit[1].endswith("GPU"):  # bf16 autocast on CUDA (files.autocast) saves half-size tensors
        need //= 2
    if need <= limit[0]:
        return
    raise ConfigError(f"image_size={cfg.image_size} with batch_size={batch}: one training step "
                      f"of {cfg.backbone} keeps about {_amount(need)} of activations, more than "
                      f"the {_amount(limit[0])} {limit[1]}; use a smaller image_size or "
                      f"train.real/synthetic.batch_size (nothing was read or written)")


def check_generation_memory(cfg: Config, batch_size: int | None = None) -> None:
    """Refuse, before the generator loads, a batch that cannot be drawn in memory: about
    GEN_BYTES_PER_PIXEL per pixel of each image of a batch, against `memory_limit`."""
    batch = cfg.generation.batch_size if batch_size is None else batch_size
    res = cfg.generation.resolution
    per_image = res * res * GEN_BYTES_PER_PIXEL
    limit = memory_limit(cfg.device)
    if limit is None or per_image * batch <= limit[0]:
        return
    raise ConfigError(f"generation.resolution={res} with batch_size={batch}: drawing a batch "
                      f"needs about {_amount(per_image * batch)} ({_amount(per_image)} an "
                      f"image), more than the {_amount(limit[0])} {limit[1]}; use a smaller "
                      f"resolution or --batch-size (nothing was written)")
