"""Synthetic-set generation on a tiny random-weight pipeline: seeds, resume, manifest, refusals."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import bridgelib.generate as gen
from bridgelib.config import get_config
from bridgelib.folders import load_image_folder
from bridgelib.files import sha256_file
from bridgelib.generate import generate_synthetic_set
from bridgelib.manifest import COLUMNS, image_seed, read_manifest
from bridgelib.pipeline import load_pipeline

CLASSES = ["digit one", "digit seven", "letter a"]
SLUGS = ["000.digit_one", "001.digit_seven", "002.letter_a"]  # label order = folder order


@pytest.fixture(scope="session")
def cfg(tiny_model):
    return get_config("mini", **{"generation.model": str(tiny_model), "generation.steps": 2})


@pytest.fixture(scope="session")
def pipe(cfg):
    return load_pipeline(cfg)


def pixels(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.asarray(Image.open(p).convert("RGB")).astype(int)
            for p in sorted(out.glob("*/*.png"))}


def snapshot(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def expected_files(per_class: int, slugs=SLUGS) -> list[str]:
    return [f"{s}/{i:05d}.png" for s in slugs for i in range(per_class)]


def test_end_to_end_two_classes(cfg, pipe, tmp_path):
    out = generate_synthetic_set(cfg, tmp_path / "set", per_class=2, class_names=CLASSES[:2],
                                 pipe=pipe, progress_bar=False)
    assert out == tmp_path / "set"
    assert sorted(pixels(out)) == expected_files(2, SLUGS[:2])
    rows = pd.read_json(out / "metadata.jsonl", lines=True)
    assert list(rows.columns) == list(COLUMNS)
    assert rows.file_name.tolist() == expected_files(2, SLUGS[:2])
    assert rows.label.tolist() == [0, 0, 1, 1]
    assert rows.class_name.tolist() == [CLASSES[0]] * 2 + [CLASSES[1]] * 2
    assert rows.prompt[2] == "A good photo of the digit seven"
    assert rows.seed.tolist() == [image_seed(0, c, i) for c in (0, 1) for i in (0, 1)]
    first = rows.iloc[0]
    assert (first.guidance_scale, first.num_inference_steps) == (cfg.generation.guidance, 2)
    assert first.scheduler == "DPMSolverMultistepScheduler" and first.model == cfg.generation.model
    assert pd.isna(first.style_token) and first.negative_prompt == ""
    assert (first.width, first.height) == (32, 32)
    assert read_manifest(out).equals(pd.DataFrame(
        [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]))
    images = load_image_folder(out, 32, CLASSES[:2])
    assert images.images.shape == (4, 3, 32, 32) and images.labels.tolist() == [0, 0, 1, 1]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["generation"]["model"] == cfg.generation.model
    assert run["options"]["class_names"] == CLASSES[:2] and run["options"]["seed"] == 0
    assert set(run["versions"]) == {"torch", "diffusers", "transformers", "bridgelib"}
    assert run["result"]["images"] == 4


def test_deterministic_and_batch_size_independent(cfg, pipe, tmp_path):
    kw = dict(per_class=3, class_names=CLASSES, pipe=pipe, progress_bar=False, seed=5)
    a = pixels(generate_synthetic_set(cfg, tmp_path / "a", batch_size=16, **kw))
    b = pixels(generate_synthetic_set(cfg, tmp_path / "b", batch_size=16, **kw))
    c = pixels(generate_synthetic_set(cfg, tmp_path / "c", batch_size=1, **kw))
    assert sorted(a) == sorted(b) == sorted(c) == expected_files(3)
    assert all((a[k] == b[k]).all() for k in a)
    # One image per call vs nine in one call: float noise ~1e-6, so uint8 off by 1 at most.
    diff = np.stack([np.abs(a[k] - c[k]) for k in a])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert any(a[k].std() > 0 for k in a)  # not blank images
    d = pixels(generate_synthetic_set(cfg, tmp_path / "d", batch_size=16, **{**kw, "seed": 6}))
    assert any(np.abs(a[k] - d[k]).max() > 5 for k in a)


class Crash(RuntimeError):
    pass


def test_resume_after_interruption_mid_batch(cfg, pipe, tmp_path, monkeypatch):
    kw = dict(per_class=2, class_names=CLASSES, pipe=pipe, progress_bar=False, batch_size=4)
    out = tmp_path / "set"
    real_write, pngs = gen.atomic_write_bytes, []

    def crashing_write(path, data):  # the 6th image (2nd of the 2nd batch) dies half-written
        pngs.extend([path] if str(path).endswith(".png") else [])
        if len(pngs) == 6:
            (Path(path).parent / f".{Path(path).name}.abc.tmp").write_bytes(data[:50])
            raise Crash()
        return real_write(path, data)

    monkeypatch.setattr(gen, "atomic_write_bytes", crashing_write)
    with pytest.raises(Crash):
        generate_synthetic_set(cfg, out, **kw)
    monkeypatch.setattr(gen, "atomic_write_bytes", real_write)
    assert len(read_manifest(out)) == 5 and list(out.glob("002.letter_a/.*.tmp"))
    # More damage: a corrupt PNG with a row; a PNG whose row was lost; a partial manifest line.
    (out / "000.digit_one/00001.png").write_bytes(b"\x89PNG broken")
    Image.new("RGB", (32, 32)).save(out / "002.letter_a/00000.png")
    lines = (out / "metadata.jsonl").read_text().splitlines()[:-1]
    (out / "metadata.jsonl").write_text("\n".join(lines) + '\n{"file_name": "002.letter_a/000')
    generate_synthetic_set(cfg, out, **kw)
    assert sorted(pixels(out)) == expected_files(2)
    assert not list(out.rglob("*.tmp"))
    rows = read_manifest(out)
    assert rows.file_name.tolist() == expected_files(2)  # sorted, one row each, no duplicates
    assert rows.seed.tolist() == [image_seed(0, c, i) for c in range(3) for i in range(2)]
    ref = pixels(generate_synthetic_set(cfg, tmp_path / "ref", **kw))
    got = pixels(out)
    assert all(np.abs(ref[k] - got[k]).max() <= 1 for k in ref)


def test_larger_per_class_extends_with_same_seeds(cfg, pipe, tmp_path):
    kw = dict(class_names=CLASSES[:2], pipe=pipe, progress_bar=False)
    out = generate_synthetic_set(cfg, tmp_path / "set", per_class=1, **kw)
    before = snapshot(out)
    generate_synthetic_set(cfg, out, per_class=2, **kw)
    after = snapshot(out)
    assert all(after[k] == v for k, v in before.items() if k.endswith(".png"))
    assert sorted(pixels(out)) == expected_files(2, SLUGS[:2])
    assert read_manifest(out).seed.tolist() == [image_seed(0, c, i) for c in (0, 1) for i in (0, 1)]
    generate_synthetic_set(cfg, out, per_class=2, **kw)  # complete: nothing changes
    assert snapshot(out) == {**after, "run.json": snapshot(out)["run.json"]}


def test_refuses_a_folder_holding_another_run(cfg, pipe, tmp_path):
    kw = dict(per_class=1, class_names=CLASSES[:2], pipe=pipe, progress_bar=False)
    out = generate_synthetic_set(cfg, tmp_path / "set", **kw)
    before = snapshot(out)
    with pytest.raises(ValueError, match=r"guidance_scale.*overwrite=True") as err:
        generate_synthetic_set(cfg, out, guidance=7.0, **kw)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="class_names"):
        generate_synthetic_set(cfg, out, **{**kw, "class_names": CLASSES[1:]})
    assert snapshot(out) == before
    generate_synthetic_set(cfg, out, guidance=7.0, overwrite=True, **kw)
    assert read_manifest(out).guidance_scale.tolist() == [7.0, 7.0]
    assert snapshot(out)["000.digit_one/00000.png"] != before["000.digit_one/00000.png"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate_synthetic_set(cfg, other, **kw)


def test_precision_is_part_of_a_set_and_a_resume_never_mixes_two(cfg, tiny_model, tmp_path,
                                                                 monkeypatch):
    """precision 'auto' computes in bf16 on a CPU with AMX (taken as this one: bf16 runs on any
    AVX-512 CPU, only slower) and fp32 computes in fp32: different pixels, named in run.json,
    and a folder drawn one way is refused the other way."""
    from bridgelib import files
    from bridgelib.pipeline import BF16_AUTOCAST
    monkeypatch.setattr(files, "cpu_has_amx", lambda: True)
    fp32 = get_config("mini", precision="fp32", **{"generation.model": str(tiny_model),
                                                    "generation.steps": 2})
    kw = dict(per_class=2, class_names=CLASSES[:2], progress_bar=False)
    a = generate_synthetic_set(cfg, tmp_path / "auto", **kw)
    b = generate_synthetic_set(fp32, tmp_path / "fp32", **kw)
    assert json.loads((a / "run.json").read_text())["options"]["precision"] == BF16_AUTOCAST
    assert json.loads((b / "run.json").read_text())["options"]["precision"] == "float32"
    pa, pb = pixels(a), pixels(b)
    assert any((pa[k] != pb[k]).any() for k in pa)  # the knob changes the computation
    assert max(np.abs(pa[k] - pb[k]).mean() for k in pa) < 8  # ... not what is drawn
    with pytest.raises(ValueError, match=r"precision: 'bfloat16 autocast', requested 'float32'"):
        generate_synthetic_set(fp32, a, **kw)


def test_compile_without_a_compiler_runs_uncompiled_with_one_warning(tiny_model, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    cfg = get_config("mini", **{"generation.model": str(tiny_model), "generation.compile": True})
    with pytest.warns(UserWarning, match="no C.. compiler .* runs uncompiled"):
        pipe = load_pipeline(cfg)
    assert not hasattr(pipe.unet, "_orig_mod")  # what torch.compile wraps a module in


# Unknown template, duplicate names, '/' in a name, names sharing a folder: the one table of
# bad inputs, tests/test_bad_inputs.py.
@pytest.mark.parametrize("change, message", [
    ({"per_class": 0}, "per_class=0"),
    ({"template": "dsi"}, "needs a style token"),
    ({"class_names": ["a", ""]}, "class name ''"),
    ({"guidance": 0}, "guidance=0"),
    ({"steps": 0}, "steps=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"style_token": "missing/learned_embeds.safetensors"}, "does not exist"),
])
def test_bad_inputs_are_refused_before_anything_is_written(cfg, pipe, tmp_path, change, message):
    kw = {"per_class": 1, "class_names": CLASSES[:2], "pipe": pipe, "progress_bar": False,
          **change}
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("(", r"\(")):
        generate_synthetic_set(cfg, tmp_path / "set", **kw)
    assert not (tmp_path / "set").exists()


def test_missing_mini_generator_says_how_to_build_it(tmp_path):
    cfg = get_config("mini", **{"generation.model": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="bridge mini build"):
        load_pipeline(cfg)


def test_style_token_of_wrong_width_is_refused(cfg, pipe, tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "learned_embeds.safetensors"
    save_file({"<x>": torch.zeros(1, 7)}, str(path))
    with pytest.raises(ValueError) as err:
        generate_synthetic_set(cfg, tmp_path / "set", per_class=1, class_names=CLASSES[:2],
                               style_token=path, pipe=pipe, progress_bar=False)
    assert str(err.value) == (f"style token {path} has width 7 but the text encoder of "
                              f"{cfg.generation.model} expects 64")
    assert "<x>" not in pipe.tokenizer.get_vocab() and not (tmp_path / "set").exists()


def test_style_token_with_dsi_template(cfg, tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "learned_embeds.safetensors"
    save_file({"<s*>": torch.randn(1, 64) * 0.03}, str(path))  # a word's norm, as learned
    fresh = load_pipeline(cfg)  # loading a token changes the pipeline: keep the shared one clean
    kw = dict(per_class=1, class_names=CLASSES[:2], style_token=path, pipe=fresh,
              progress_bar=False)
    out = generate_synthetic_set(cfg, tmp_path / "set", template="dsi", **kw)
    rows = read_manifest(out)
    assert rows.prompt.tolist() == [f"A {c} photo in the style of <s*>" for c in CLASSES[:2]]
    assert rows.style_token.tolist() == [{"name": "<s*>", "sha256": sha256_file(path)}] * 2
    before = snapshot(out)
    generate_synthetic_set(cfg, out, **kw)  # token already in the pipeline, set complete
    assert {k: v for k, v in snapshot(out).items() if k != "run.json"} == \
        {k: v for k, v in before.items() if k != "run.json"}
    first = pixels(out)
    (out / "000.digit_one/00000.png").unlink()  # redrawn with the token set in place: same image
    generate_synthetic_set(cfg, out, **kw)
    assert np.abs(pixels(out)["000.digit_one/00000.png"] - first["000.digit_one/00000.png"]).max() <= 1
    other = tmp_path / "other_embeds.safetensors"  # same token name, other vector
    save_file({"<s*>": torch.randn(1, 64) * 0.15}, str(other))
    b = pixels(generate_synthetic_set(cfg, tmp_path / "b", **{**kw, "style_token": other}))
    assert np.abs(b["000.digit_one/00000.png"] - first["000.digit_one/00000.png"]).max() > 0
    c = pixels(generate_synthetic_set(cfg, tmp_path / "c", **kw))  # back to the first vector
    assert np.abs(c["000.digit_one/00000.png"] - first["000.digit_one/00000.png"]).max() <= 1
    with pytest.raises(ValueError, match="only used by template 'dsi'"):
        generate_synthetic_set(cfg, tmp_path / "other", template="single", **kw)


def test_fp16_weights_are_loaded_as_the_fp16_variant_when_a_model_has_them(tiny_model, tmp_path):
    """On CUDA the paper profile runs SD v1.5 in float16: its fp16 files are downloaded and
    loaded (variant="fp16"), not the fp32 files cast after loading; a folder without them
    loads its fp32 files."""
    import shutil
    from diffusers import StableDiffusionPipeline
    from bridgelib.pipeline import fp16_variant, hub_revision
    assert fp16_variant(str(tiny_model), torch.float16) == "fp16"  # saved with variant="fp16"
    assert fp16_variant(str(tiny_model), torch.float32) is None
    assert fp16_variant("stable-diffusion-v1-5/stable-diffusion-v1-5", torch.float16) == "fp16"
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain, ignore=shutil.ignore_patterns("*.fp16.*"))
    assert fp16_variant(str(plain), torch.float16) is None
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model), variant="fp16",
                                                   safety_checker=None)
    fp16_file = next(tiny_model.glob("unet/*.fp16.*"))
    from safetensors.torch import load_file
    saved = load_file(fp16_file)
    name, tensor = next(iter(saved.items()))
    assert tensor.dtype == torch.float16
    assert torch.equal(pipe.unet.state_dict()[name].half(), tensor)  # the fp16 file's values
    assert hub_revision(str(tiny_model)) is None  # a folder is named by its fingerprint


def test_a_model_without_fp16_files_loads_its_fp32_files_when_fp16_is_asked(tiny_model, tmp_path,
                                                                             monkeypatch):
    """A hub model is asked for its fp16 files (fp16_variant cannot list a repository offline);
    one that has none loads its fp32 files instead of failing (diffusers raises for them)."""
    import shutil
    import bridgelib.pipeline as pipeline
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain, ignore=shutil.ignore_patterns("*.fp16.*"))
    monkeypatch.setattr(pipeline, "fp16_variant", lambda model, dtype: "fp16")
    pipe = load_pipeline(get_config("mini", **{"generation.model": str(plain)}))
    assert pipe.unet.dtype == torch.float32 and pipe.unet.config.in_channels == 4
