"""Is this machine ready for the workshop? Five checks, one line each, in well under a minute.

    python tools/check_laptop.py                 # what `make check` runs
    python tools/check_laptop.py --only world    # one check (imports, world, generate, train, kernel)
    python tools/check_laptop.py --data-dir DIR  # check a copy of data/ elsewhere (world only)

Prints `ok   <check>: <what was seen>` or `FAIL <check>: <what is wrong and what to do>` per
check, then one summary line; exits 1 if any check failed. It writes nothing outside a
temporary folder. `make test` (15-26 minutes) is the project's full test; this is the quick one
for a room of laptops (docs/workshop.md).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The shipped world: every file a notebook reads from data/ (paths relative to data/).
WORLD_FILES = (
    "fashion-mnist/pool.npz", "fashion-mnist/test.npz", "fashion-mnist/split.json",
    "mini-backbone/manifest.json", "mini-backbone/model.safetensors",
    "mini-judge/manifest.json", "mini-judge/model.safetensors",
    "mini-generator/model_index.json", "mini-generator/scheduler/scheduler_config.json",
    "mini-generator/text_encoder/config.json", "mini-generator/text_encoder/model.safetensors",
    "mini-generator/tokenizer/tokenizer.json", "mini-generator/unet/config.json",
    "mini-generator/unet/diffusion_pytorch_model.safetensors", "mini-generator/vae/config.json",
    "mini-generator/vae/diffusion_pytorch_model.safetensors", "mini-world.json",
    "results/store/results.csv", "results/store/histories.csv", "results/store/store.json",
)
CHECKS = ("imports", "world", "generate", "train", "kernel")
STACK = ("torch", "torchvision", "diffusers", "transformers", "timm", "pandas", "matplotlib",
         "papermill", "nbval", "jupyter_client", "ipykernel")


def check_imports(args) -> str:
    import importlib
    missing = []
    for name in STACK:
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        raise RuntimeError(f"cannot import {', '.join(missing)}; run make install "
                           f"(offline: make install WHEELHOUSE=DIR)")
    import torch

    import bridgelib
    if sys.version_info < (3, 11):
        raise RuntimeError(f"Python {sys.version.split()[0]}; the course needs 3.11 or newer")
    return (f"Python {sys.version.split()[0]}, torch {torch.__version__}, bridgelib "
            f"{bridgelib.__version__} from {Path(bridgelib.__file__).parent}")


def check_world(args) -> str:
    data = Path(args.data_dir) if args.data_dir else REPO_ROOT / "data"
    missing = [f for f in WORLD_FILES if not (data / f).is_file()]
    if missing:
        raise RuntimeError(f"{len(missing)} of the shipped world's files are missing under "
                           f"{data}, first {missing[0]}; copy the whole repository (data/ "
                           f"included) or git clone it again")
    empty = [f for f in WORLD_FILES if (data / f).stat().st_size == 0]
    if empty:
        raise RuntimeError(f"{data / empty[0]} is empty (a copy cut short?); copy data/ again")
    if args.data_dir:
        return f"all {len(WORLD_FILES)} files present under {data}"
    import bridgelib as bl
    cfg = bl.get_config("mini")
    train, test = bl.load_dataset(cfg, "train", 4, 0), bl.load_dataset(cfg, "test")
    return (f"{len(WORLD_FILES)} files; {len(train)} 4-shot training images, {len(test)} test "
            f"images, {len(train.class_names)} classes")


def check_generate(args) -> str:
    import bridgelib as bl
    from bridgelib.generate import generate_synthetic_set
    cfg = bl.get_config("mini")
    names = bl.load_dataset(cfg, "test").class_names[:2]
    with tempfile.TemporaryDirectory() as tmp:
        out = generate_synthetic_set(cfg, Path(tmp) / "set", 1, class_names=names, steps=2,
                                     progress_bar=False)
        images = bl.load_image_folder(out, cfg.image_size, names)
    if len(images) != len(names):
        raise RuntimeError(f"generated {len(images)} images, expected {len(names)}")
    return f"{len(images)} images from the mini generator ({cfg.image_size} px, 2 steps)"


def check_train(args) -> str:
    import torch

    import bridgelib as bl
    cfg = bl.get_config("mini")
    data = bl.load_dataset(cfg, "train", 1, 0)
    torch.manual_seed(0)  # the same loss on every laptop
    model = bl.create_classifier(cfg, len(data.class_names))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = data.images.float() / 255
    loss = torch.nn.functional.cross_entropy(model(x), data.labels)
    loss.backward()
    opt.step()
    if not torch.isfinite(loss):
        raise RuntimeError(f"one training step gave a non-finite loss ({loss.item()})")
    return f"one step of {cfg.backbone} on {len(data)} images, loss {loss.item():.3f}"


def check_kernel(args) -> str:
    import subprocess

    from jupyter_client.manager import start_new_kernel
    # The kernel's own log (a TCP notice on every start) is not a finding: its stderr is dropped;
    # a kernel that cannot start or import says so below.
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(REPO_ROOT / "notebooks"),
                              stderr=subprocess.DEVNULL)
    try:
        kc.execute("import bridgelib; print(bridgelib.__version__)")
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "error":
                raise RuntimeError(f"the notebooks' kernel cannot import bridgelib: "
                                   f"{content['ename']}: {content['evalue']}")
            if kind == "stream":
                return f"python3 kernel started and imported bridgelib {content['text'].strip()}"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=CHECKS, action="append", help="run only this check")
    p.add_argument("--data-dir", help="check the world's files under this folder (default: "
                                      "the repository's data/)")
    args = p.parse_args(argv)
    start, failed = time.perf_counter(), []
    for name in args.only or CHECKS:
        t = time.perf_counter()
        try:
            seen = globals()[f"check_{name}"](args)
            print(f"ok   {name}: {seen} ({time.perf_counter() - t:.1f} s)", flush=True)
        except Exception as err:  # every failure is one line: what is wrong, what to do
            failed.append(name)
            text = " ".join(str(err).split()) or type(err).__name__
            print(f"FAIL {name}: {text}", flush=True)
    took = time.perf_counter() - start
    print(f"{'ready' if not failed else 'NOT ready'}: {len(failed)} of "
          f"{len(args.only or CHECKS)} checks failed ({', '.join(failed) or 'none'}), "
          f"{took:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
