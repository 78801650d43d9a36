"""Style token files in every format diffusers' load_textual_inversion reads, through the real
`bridge generate` on the shipped mini pipeline: the row the run prompts with is the row diffusers
loads from the same file into a fresh pipeline; bad files are refused in one line."""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import bridgelib.cli as cli
import bridgelib.generate as generate
from bridgelib.config import get_config
from bridgelib.pipeline import load_pipeline, read_style_token, save_style_token
from cli_helpers import generate as generate_argv

WIDTH = 64  # the mini text encoder's
VEC = torch.randn(2, WIDTH, generator=torch.Generator().manual_seed(0)) * 0.03  # a word's scale


def diffusers_file(t: Path) -> Path:  # {token: tensor}, as `bridge invert` and diffusers write
    save_file({"<d*>": VEC[:1].clone()}, t / "learned_embeds.safetensors")
    return t / "learned_embeds.safetensors"


def a1111_file(t: Path, rows=1) -> Path:  # as AUTOMATIC1111's webui saves an embedding
    torch.save({"string_to_token": {"*": 265},
                "string_to_param": {"*": VEC[:rows].clone().requires_grad_(True)},
                "name": "<a*>", "step": 500, "sd_checkpoint": "0123abcd",
                "sd_checkpoint_name": "v1-5-pruned"}, t / "a1111.pt")
    return t / "a1111.pt"


def emb_params_file(t: Path, width=WIDTH) -> Path:  # kohya / A1111 safetensors: no token name
    save_file({"emb_params": VEC[:1, :1].repeat(1, width) if width != WIDTH else VEC[:1].clone()},
              t / "kohya.safetensors")
    return t / "kohya.safetensors"


# (id, file writer, extra CLI arguments, the word prompts use, diffusers' own call's token=)
FORMATS = [
    ("diffusers", diffusers_file, [], "<d*>", None),
    ("a1111-pt", a1111_file, [], "<a*>", None),
    ("a1111-pt-two-vectors", lambda t: a1111_file(t, rows=2), [], "<a*>", None),
    ("emb-params-with-token", emb_params_file, ["--token", "<k*>"], "<k*>", "<k*>"),
]


@pytest.fixture
def used(monkeypatch) -> list:
    """The pipelines `bridge generate` loads (and draws with), kept to read their rows."""
    pipes = []

    def keep(*args, **kwargs):
        pipes.append(load_pipeline(*args, **kwargs))
        return pipes[-1]
    monkeypatch.setattr(generate, "load_pipeline", keep)
    return pipes


def token_rows(pipe, name: str) -> torch.Tensor:
    """The embedding rows of `name` (and name_1..., diffusers' multi-vector names) in `pipe`."""
    names, vocab = [name], pipe.tokenizer.get_added_vocab()
    while f"{name}_{len(names)}" in vocab:
        names.append(f"{name}_{len(names)}")
    ids = pipe.tokenizer.convert_tokens_to_ids(names)
    return pipe.text_encoder.get_input_embeddings().weight[ids].detach().clone()


@pytest.mark.parametrize("write, extra, name, diffusers_token", [f[1:] for f in FORMATS],
                         ids=[f[0] for f in FORMATS])
def test_bridge_generate_prompts_with_the_row_diffusers_loads(write, extra, name,
                                                              diffusers_token, tmp_path, used,
                                                              capsys):
    path = write(tmp_path)
    argv = generate_argv(tmp_path, "--style-token", str(path), *extra)
    assert cli.main(argv) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "set" / "metadata.jsonl").open()]
    assert len(rows) == 10 and all(r["prompt"].endswith(f"in the style of {name}") for r in rows)
    assert {r["style_token"]["name"] for r in rows} == {name}

    fresh = load_pipeline(get_config("mini"))
    fresh.load_textual_inversion(str(path), token=diffusers_token)  # diffusers' own reading
    want = token_rows(fresh, name)
    got = token_rows(used[0], name)
    assert got.shape == want.shape == (len(want), WIDTH)
    assert torch.equal(got, want)
    assert torch.equal(want, VEC[:len(want)])  # the vector that was written, bit for bit


def test_a_saved_token_carries_its_metadata_and_is_the_same_bytes(tmp_path):
    model = str(get_config("mini").generation.model)
    a = tmp_path / "a.safetensors"
    sha = save_style_token(a, "<s*>", VEC[:1], model, steps=6)
    assert save_style_token(tmp_path / "b.safetensors", "<s*>", VEC[:1], model, 6) == sha
    assert a.read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with safe_open(str(a), "pt") as f:
        meta = f.metadata()
    assert meta["token"] == "<s*>" and meta["steps"] == "6" and meta["num_vectors"] == "1"
    assert meta["base_model"] == "mini-generator" and len(meta["base_model_fingerprint"]) == 16
    token = read_style_token(a)
    assert token.name == "<s*>" and token.format == "diffusers" and token.sha256 == sha
    assert torch.equal(token.vectors, VEC[:1])


def test_bridge_invert_writes_a_token_bridge_generate_reads(tmp_path, used, capsys):
    out = tmp_path / "tok.safetensors"
    argv = ["invert", "--shots", "1", "--steps", "2", "--batch-size", "2", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert f"checkpoints are kept in {tmp_path / 'tok_checkpoints'}" in said and "--resume" in said
    assert sorted(p.name for p in (tmp_path / "tok_checkpoints").iterdir()) == ["step_000002.pt"]
    token = read_style_token(out)
    assert token.metadata["steps"] == "2" and token.metadata["token"] == token.name == "<s*>"
    assert cli.main(generate_argv(tmp_path, "--style-token", str(out))) == 0
    assert torch.equal(token_rows(used[0], "<s*>"), token.vectors)


def two_tensors(t: Path) -> Path:
    save_file({"<a>": VEC[:1].clone(), "<b>": VEC[1:].clone()}, t / "two.safetensors")
    return t / "two.safetensors"


def a1111_two_entries(t: Path) -> Path:
    torch.save({"string_to_param": {"*": VEC[:1].clone(), "x": VEC[1:].clone()},
                "name": "<a*>"}, t / "two.pt")
    return t / "two.pt"


def bare_tensor(t: Path) -> Path:
    torch.save(VEC[:1].clone(), t / "bare.pt")
    return t / "bare.pt"


# (id, setup -> argv extras, strings the one-line message must hold)
REFUSALS = [
    ("several-tensors", lambda t: ["--style-token", str(two_tensors(t))],
     ["two.safetensors'", "2 tensors (<a>, <b>)", "bridge invert", "string_to_param",
      "emb_params"]),
    ("a1111-several-entries", lambda t: ["--style-token", str(a1111_two_entries(t))],
     ["two.pt'", "string_to_param holds ['*', 'x']", "one entry '*'"]),
    ("wrong-width", lambda t: ["--style-token", str(emb_params_file(t, width=768)),
                               "--token", "<k*>"],
     ["kohya.safetensors", "width 768", "mini-generator expects 64"]),
    ("emb-params-without-token", lambda t: ["--style-token", str(emb_params_file(t))],
     ["kohya.safetensors'", "'emb_params'", "names no token", "--token '<name>'"]),
    ("bare-tensor-without-token", lambda t: ["--style-token", str(bare_tensor(t))],
     ["bare.pt'", "bare tensor", "--token '<name>'"]),
    ("token-without-a-file", lambda t: ["--token", "<k*>"],
     ["--token '<k*>'", "no style token", "--style-token FILE"]),
    ("token-with-a-space", lambda t: ["--style-token", str(diffusers_file(t)), "--token", "a b"],
     ["'a b'", "one word"]),
]


@pytest.mark.parametrize("setup, named", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_bad_token_file_is_refused_in_one_line(setup, named, tmp_path, capsys):
    argv = generate_argv(tmp_path, *setup(tmp_path))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bridge generate: error: ") and "\n" not in err, err
    for text in named:
        assert text in err, f"{text!r} not in: {err}"
    assert not (tmp_path / "set").exists()


def test_bridge_sweep_takes_token_for_a_file_that_names_none(tmp_path, monkeypatch, capsys):
    """`bridge sweep --style-token` reads the same formats as generate: an emb_params file
    without --token is refused in one line before any run trains; with --token its DSI set
    prompts with that word."""
    monkeypatch.setenv("BRIDGELIB_CACHE", str(tmp_path / "cache"))  # not the repository's
    path = emb_params_file(tmp_path)
    argv = ["sweep", "--recipes", "bridged", "--shots", "1", "--per-class", "1", "--templates",
            "dsi", "--style-token", str(path), "--out", str(tmp_path / "runs"),
            "--set", "train.real.epochs=1", "--set", "train.real.min_steps=0",
            "--set", "train.synthetic.epochs=1", "--no-save-model"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bridge sweep: error: ") and "\n" not in err, err
    assert "names no token" in err and "--token '<name>'" in err
    assert not list((tmp_path / "runs").glob("*/metrics.json"))

    assert cli.main(argv + ["--token", "<k*>"]) == 0, capsys.readouterr().err
    sets = list((tmp_path / "cache" / "synthetic").glob("*/metadata.jsonl"))
    assert len(sets) == 1
    rows = [json.loads(line) for line in sets[0].open()]
    assert len(rows) == 10 and all(r["prompt"].endswith("in the style of <k*>") for r in rows)
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 1


@pytest.mark.parametrize("vector, named", [(torch.zeros(WIDTH), "zero"),
                                           (torch.full((WIDTH,), float("nan")), "not finite")])
def test_nearest_words_refuses_a_vector_with_no_direction(vector, named):
    """Every cosine to a zero (or NaN) vector is 0 (or NaN): a table of 'nearest' words would
    be arbitrary, so it is refused in one line instead."""
    from bridgelib.pipeline import nearest_words
    pipe = load_pipeline(get_config("mini"))
    with pytest.raises(ValueError, match=named) as err:
        nearest_words(vector, pipe.tokenizer, pipe.text_encoder)
    assert "\n" not in str(err.value) and "bridge invert" in str(err.value)
    table = nearest_words(VEC[0], pipe.tokenizer, pipe.text_encoder, k=3)  # a real vector: works
    assert len(table) == 3 and table.cosine.is_monotonic_decreasing
