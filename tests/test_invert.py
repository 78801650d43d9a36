"""Dataset Style Inversion on a tiny random-weight pipeline: frozen weights, file format, resume."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from bridgelib.config import get_config
from bridgelib.datasets import load_dataset
from bridgelib.files import sha256_file
from bridgelib.generate import generate_synthetic_set
from bridgelib.manifest import read_manifest
from bridgelib.invert import add_style_token, learn_style_token, token_loss
from bridgelib.pipeline import load_pipeline, load_style_token, nearest_words, single_token_id

TOKEN = "<s*>"


@pytest.fixture(scope="module")
def cfg(tiny_model):
    return get_config("mini", **{"generation.model": str(tiny_model), "invert.steps": 6,
                                 "invert.checkpoint_every": 2, "invert.batch_size": 4,
                                 "generation.steps": 2})


@pytest.fixture(scope="module")
def images():
    return load_dataset("fashion-mnist", "train", 1).subset(range(5))  # five classes, one each


@pytest.fixture(scope="module")
def trained(cfg, images, tmp_path_factory):
    """One uninterrupted 6-step run, with snapshots of every weight before and after."""
    pipe = load_pipeline(cfg)
    before = {f"{m}.{n}": p.detach().clone() for m in ("vae", "unet", "text_encoder")
              for n, p in getattr(pipe, m).named_parameters()}
    out = tmp_path_factory.mktemp("straight") / "learned_embeds.safetensors"
    record = learn_style_token(cfg, images, out, pipe=pipe, progress_bar=False)
    return {"pipe": pipe, "before": before, "out": out, "record": record}


class Interrupt(Exception):
    pass


def test_only_the_new_rows_change(trained):
    pipe, before, ids = trained["pipe"], trained["before"], trained["record"]["token_ids"]
    for m in ("vae", "unet", "text_encoder"):
        for n, p in getattr(pipe, m).named_parameters():
            name = f"{m}.{n}"
            if name.endswith("token_embedding.weight"):
                old = before[name]
                assert torch.equal(p[:len(old)], old), "an old embedding row changed"
                assert len(p) == len(old) + 1 and ids == [len(old)]
                init = old[pipe.tokenizer.convert_tokens_to_ids("style</w>")]
                assert not torch.equal(p[ids[0]], init), "the token did not learn"
            else:
                assert torch.equal(p, before[name]), f"{name} changed"
            assert p.requires_grad, "requires_grad flags were not restored"


def test_file_and_record(trained, cfg):
    out, record = trained["out"], trained["record"]
    tensors = load_file(str(out))
    assert list(tensors) == [TOKEN] and tensors[TOKEN].shape == (1, 64)
    assert torch.equal(tensors[TOKEN][0],
                       trained["pipe"].text_encoder.get_input_embeddings().weight[-1].detach())
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["sha256"] == sha256_file(out) == record["sha256"]
    assert len(saved["loss_curve"]) == 6 and saved["steps"] == 6 and saved["batch_size"] == 4
    assert saved["base_model"] == cfg.generation.model and saved["config"]["invert"]["steps"] == 6
    assert saved["steps_per_s"] > 0
    ckpts = sorted(p.name for p in (out.parent / "learned_embeds_checkpoints").iterdir())
    assert ckpts == ["step_000004.pt", "step_000006.pt"]  # the last two are kept


def test_diffusers_loads_it_and_generation_uses_it(trained, cfg, tmp_path):
    fresh = load_pipeline(cfg)
    fresh.load_textual_inversion(str(trained["out"]))  # diffusers' own loader, as is
    tid = fresh.tokenizer.convert_tokens_to_ids(TOKEN)
    assert fresh.tokenizer("in the style of <s*>").input_ids[-2] == tid
    assert torch.equal(fresh.text_encoder.get_input_embeddings().weight[tid],
                       load_file(str(trained["out"]))[TOKEN][0])
    out = generate_synthetic_set(cfg, tmp_path / "set", per_class=1,
                                 class_names=["digit one", "digit seven"],
                                 style_token=trained["out"], steps=2, progress_bar=False)
    df = read_manifest(out)
    assert list(df.prompt) == ["A digit one photo in the style of <s*>",
                               "A digit seven photo in the style of <s*>"]
    assert df.style_token[0]["sha256"] == trained["record"]["sha256"]


def test_resume_equals_uninterrupted(trained, cfg, images, tmp_path):
    out = tmp_path / "learned_embeds.safetensors"

    def stop_at_4(step, pipe):
        if step == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        learn_style_token(cfg, images, out, progress_bar=False, on_checkpoint=stop_at_4)
    assert not out.exists()
    with pytest.raises(FileExistsError, match="resume=True"):  # checkpoints are not discarded
        learn_style_token(cfg, images, out, progress_bar=False)
    record = learn_style_token(cfg, images, out, resume=True, progress_bar=False)
    assert record["resumed_from"] == 4
    assert torch.equal(load_file(str(out))[TOKEN], load_file(str(trained["out"]))[TOKEN])
    assert record["loss_curve"] == trained["record"]["loss_curve"]
    with pytest.raises(ValueError, match="lr="):  # a resume must keep the run's settings
        learn_style_token(cfg, images, out, resume=True, lr=0.1, progress_bar=False)


def test_every_vector_of_a_three_vector_token_learns(cfg, images, tmp_path):
    """num_vectors=3: each vector moves from its initialiser (other implementations have trained
    only the first), the saved file holds all three, diffusers expands the token to all three,
    and the nearest words are reported per vector."""
    cfg3 = get_config("mini", **{**{f"invert.{k}": v for k, v in cfg.invert.__dict__.items()},
                                 "generation.model": cfg.generation.model,
                                 "invert.num_vectors": 3, "invert.steps": 2})
    out = tmp_path / "three.safetensors"
    record = learn_style_token(cfg3, images, out, progress_bar=False)
    saved = load_file(str(out))
    assert list(saved) == [TOKEN] and saved[TOKEN].shape == (3, 64) and len(record["token_ids"]) == 3
    fresh = load_pipeline(cfg)
    init = fresh.text_encoder.get_input_embeddings().weight[  # what add_style_token copies
        single_token_id(fresh.tokenizer, cfg3.invert.initializer, "initializer")].detach()
    for i, row in enumerate(saved[TOKEN]):
        assert (row - init).norm() > 1e-4 * init.norm(), f"vector {i} did not move from its initialiser"
    assert not torch.allclose(saved[TOKEN][1], saved[TOKEN][2]), "two vectors learnt as one"
    fresh.load_textual_inversion(str(out))
    assert fresh.maybe_convert_prompt("of <s*>", fresh.tokenizer) == "of <s*> <s*>_1 <s*>_2"
    near = nearest_words(saved[TOKEN], fresh.tokenizer, fresh.text_encoder, k=2)
    assert list(near.columns) == ["vector", "word", "cosine"] and near.vector.tolist() == [0, 0, 1, 1, 2, 2]
    assert all(g.cosine.is_monotonic_decreasing for _, g in near.groupby("vector"))


def test_refusals(trained, cfg, images, tmp_path):
    wrong = tmp_path / "wrong.safetensors"
    save_file({"<x>": torch.zeros(1, 7)}, str(wrong))
    fresh = load_pipeline(cfg)
    with pytest.raises(ValueError, match=r"has width 7 but the text encoder of .* expects 64") as e:
        load_style_token(wrong, fresh)
    assert "\n" not in str(e.value) and "<x>" not in fresh.tokenizer.get_vocab()
    assert load_style_token(trained["out"], fresh) == TOKEN
    with pytest.raises(FileExistsError, match="overwrite=True") as e:
        learn_style_token(cfg, images, trained["out"], progress_bar=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="already in the tokenizer"):
        add_style_token(fresh.tokenizer, fresh.text_encoder, TOKEN, "style", 1)
    with pytest.raises(ValueError, match=r"initializer 'handwriting' is \d+ tokens") as e:
        add_style_token(fresh.tokenizer, fresh.text_encoder, "<y>", "handwriting", 1)
    assert "\n" not in str(e.value)


def test_overwrite_and_a_pipeline_that_holds_the_token(trained, cfg, images, tmp_path):
    out = tmp_path / "o.safetensors"
    shutil.copy(trained["out"], out)
    pipe = load_pipeline(cfg)
    first = learn_style_token(cfg, images, out, steps=2, overwrite=True, pipe=pipe,
                              progress_bar=False)
    assert first["steps"] == 2 and sha256_file(out) == first["sha256"]
    # Again in the same pipeline (a notebook rerun): the token's rows start afresh.
    again = learn_style_token(cfg, images, out, steps=2, overwrite=True, pipe=pipe,
                              progress_bar=False)
    assert again["token_ids"] == first["token_ids"] and again["sha256"] == first["sha256"]
    with pytest.raises(ValueError, match="steps=0 is invalid"):
        learn_style_token(cfg, images, tmp_path / "z.safetensors", steps=0, progress_bar=False)


def test_nearest_words_and_token_loss(trained, images):
    pipe = trained["pipe"]
    vec = load_file(str(trained["out"]))[TOKEN]
    df = nearest_words(vec, pipe.tokenizer, pipe.text_encoder, k=5)
    assert list(df.columns) == ["word", "cosine"] and len(df) == 5
    assert df.cosine.is_monotonic_decreasing and not df.word.str.endswith("</w>").any()
    assert all(len(w) >= 2 for w in df.word)
    some = nearest_words(vec, pipe.tokenizer, pipe.text_encoder, k=2, words=["scanned", "catalog", "style"])
    assert len(some) == 2 and set(some.word) <= {"scanned", "catalog", "style"}
    dsi = "A {class} photo in the style of <s*>"
    a = token_loss(pipe, images, dsi, seed=3, timesteps=(200, 700))
    b = token_loss(pipe, images, dsi, seed=3, timesteps=(200, 700))
    c = token_loss(pipe, images, [f"a scanned photo of the {images.class_names[int(l)]}"
                                  for l in images.labels], seed=3, timesteps=(200, 700))
    assert a == b and a > 0 and c > 0 and a != c


def test_norm_cap_guards_the_content(cfg, images, tmp_path):
    # A large learning rate pushes the token far out; the cap holds it at 1.5x the mean norm.
    capped = learn_style_token(cfg, images, tmp_path / "c.safetensors", steps=2, lr=5.0,
                               progress_bar=False)
    norm = load_file(str(tmp_path / "c.safetensors"))[TOKEN].norm().item()
    assert norm == pytest.approx(capped["max_norm"], rel=1e-5)
    free = learn_style_token(cfg, images, tmp_path / "f.safetensors", steps=2, lr=5.0,
                             max_norm_factor=None, progress_bar=False)
    assert free["max_norm"] is None
    assert load_file(str(tmp_path / "f.safetensors"))[TOKEN].norm().item() > 2 * norm
