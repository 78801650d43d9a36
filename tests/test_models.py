"""The shipped mini backbone, its checksum guard, and head re-initialisation."""
import copy
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from bridgelib.config import get_config
from bridgelib.files import sha256_file
from bridgelib.models import (MANIFEST_FILE, WEIGHTS_FILE, WeightsError, create_classifier,
                              head_parameters, reinit_head)


@pytest.fixture(scope="module")
def cfg():
    return get_config("mini")


@pytest.fixture(scope="module")
def shipped_dir(cfg):
    from pathlib import Path
    return Path(cfg.backbone_weights)


@pytest.fixture(scope="module")
def shipped(shipped_dir):
    return load_file(shipped_dir / WEIGHTS_FILE)


@pytest.fixture(scope="module")
def manifest(shipped_dir):
    return json.loads((shipped_dir / MANIFEST_FILE).read_text())


@pytest.fixture(scope="module")
def model(cfg):
    return create_classifier(cfg, 10)


def split_state(model):
    """(head, body) state dicts, cloned; buffers (BatchNorm statistics) count as body."""
    head = head_parameters(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return ({k: v for k, v in state.items() if k in head},
            {k: v for k, v in state.items() if k not in head})


def test_shipped_files_match_their_manifest(shipped_dir, manifest):
    assert sha256_file(shipped_dir / WEIGHTS_FILE) == manifest["sha256"]
    assert manifest["architecture"] == get_config("mini").backbone


def test_head_parameters_names_the_fc_layer(model):
    assert head_parameters(model) == {"fc.weight", "fc.bias"}


def test_shipped_backbone_loads_with_a_fresh_head(model, shipped):
    head, body = split_state(model)
    assert model.get_classifier().out_features == 10
    assert head["fc.weight"].shape == (10, model.get_classifier().in_features)
    shipped_body = {k: v for k, v in shipped.items() if not k.startswith("fc.")}
    assert set(body) == set(shipped_body), "body keys differ from the shipped file's"
    for k, v in shipped_body.items():
        assert torch.equal(body[k], v), f"{k} differs from the shipped weights"


def test_num_classes_none_keeps_the_pretraining_head(cfg, shipped, manifest):
    m = create_classifier(cfg, None)
    assert m.get_classifier().out_features == len(manifest["classes"]) == len(shipped["fc.bias"])
    state = m.state_dict()
    for k, v in shipped.items():
        assert torch.equal(state[k], v), f"{k} differs from the shipped weights"


def test_pretrained_false_is_not_the_shipped_body(cfg, shipped):
    m = create_classifier(cfg, 10, pretrained=False)
    state = m.state_dict()
    weights = [k for k, v in shipped.items() if k.endswith("weight") and not k.startswith("fc.")
               and v.dim() > 1]
    assert weights
    assert not any(torch.equal(state[k], shipped[k]) for k in weights)


# -- the checksum guard ------------------------------------------------------------------------

@pytest.fixture
def weights_copy(tmp_path, shipped_dir):
    dst = tmp_path / "backbone"
    shutil.copytree(shipped_dir, dst)
    return dst


@pytest.fixture(scope="module")
def original_hashes(shipped_dir):
    return {p.name: sha256_file(p) for p in shipped_dir.iterdir() if p.is_file()}


def test_copied_weights_load(weights_copy, shipped):
    m = create_classifier(get_config("mini", backbone_weights=str(weights_copy)), 10)
    assert torch.equal(m.state_dict()["conv1.0.weight"], shipped["conv1.0.weight"])


@pytest.mark.parametrize("missing", [WEIGHTS_FILE, MANIFEST_FILE])
def test_missing_file_says_how_to_rebuild(weights_copy, missing, original_hashes, shipped_dir):
    (weights_copy / missing).unlink()
    with pytest.raises(WeightsError) as err:
        create_classifier(get_config("mini", backbone_weights=str(weights_copy)), 10)
    message = str(err.value)
    assert "\n" not in message
    assert "missing" in message and "bridge mini build" in message
    assert {p.name: sha256_file(p) for p in shipped_dir.iterdir() if p.is_file()} == original_hashes


def test_missing_folder_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="bridge mini build"):
        create_classifier(get_config("mini", backbone_weights=str(tmp_path / "nowhere")), 10)


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_corrupted_file_is_refused(weights_copy, where, original_hashes, shipped_dir):
    path = weights_copy / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    pos = {"start": 0, "middle": len(data) // 2, "end": len(data) - 1}[where]
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as err:
        create_classifier(get_config("mini", backbone_weights=str(weights_copy)), 10)
    message = str(err.value)
    assert "corrupted" in message and "bridge mini build" in message and "\n" not in message
    assert {p.name: sha256_file(p) for p in shipped_dir.iterdir() if p.is_file()} == original_hashes


def test_truncated_file_is_refused(weights_copy):
    path = weights_copy / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="corrupted"):
        create_classifier(get_config("mini", backbone_weights=str(weights_copy)), 10)


def test_weights_that_do_not_fit_the_architecture_are_a_weights_error():
    cfg = get_config("mini", backbone_kwargs={"channels": [64, 128, 256, 512]})
    with pytest.raises(WeightsError) as err:
        create_classifier(cfg, 10)
    assert "\n" not in str(err.value)


# -- head re-initialisation --------------------------------------------------------------------

def test_reinit_head_changes_head_only(model):
    m = copy.deepcopy(model)
    head_before, body_before = split_state(m)
    assert reinit_head(m, seed=5) is m
    head_after, body_after = split_state(m)
    for k in head_before:
        assert not torch.equal(head_before[k], head_after[k]), f"{k} was not re-initialised"
    assert body_before.keys() == body_after.keys()
    for k in body_before:
        assert torch.equal(body_before[k], body_after[k]), f"body tensor {k} changed"


def test_reinit_head_is_deterministic_for_a_seed(model):
    a, b, c = (copy.deepcopy(model) for _ in range(3))
    with torch.no_grad():
        b.get_classifier().weight.mul_(3.0)  # a different starting head must not matter
    reinit_head(a, seed=7)
    reinit_head(b, seed=7)
    reinit_head(c, seed=8)
    ha, hb, hc = split_state(a)[0], split_state(b)[0], split_state(c)[0]
    assert all(torch.equal(ha[k], hb[k]) for k in ha)
    assert not torch.equal(ha["fc.weight"], hc["fc.weight"])


def test_reinit_head_leaves_the_global_rng_alone(model):
    m = copy.deepcopy(model)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    reinit_head(m, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_reinit_head_gives_a_usual_linear_init(model):
    m = copy.deepcopy(model)
    reinit_head(m, seed=0)
    fc = m.get_classifier()
    bound = 1 / fc.in_features ** 0.5                    # nn.Linear's default init range
    assert fc.weight.abs().max() <= bound and fc.bias.abs().max() <= bound
    assert fc.weight.std() > bound / 4                   # not zeros


# -- a local safetensors file of a timm state dict (the hub's weights, copied) -----------------

@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(0)
    state = timm.create_model("resnet18").state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file(state, path)
    return path, state


def test_a_state_dict_file_loads_as_backbone_weights(resnet18_file):
    path, state = resnet18_file
    cfg = get_config("paper", backbone_weights=str(path), device="cpu")
    model = create_classifier(cfg, 5)
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])
    assert model.get_classifier().out_features == 5  # a fresh head
    source = create_classifier(cfg, None)  # keeps the file's 1000-class head
    assert torch.equal(source.state_dict()["fc.weight"], state["fc.weight"])


def test_a_state_dict_file_of_another_model_is_one_line(resnet18_file):
    path, _ = resnet18_file
    cfg = get_config("paper", backbone="resnet50", backbone_weights=str(path), device="cpu")
    with pytest.raises(WeightsError) as err:
        create_classifier(cfg, 5)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "resnet50" in message
    assert "state_dict()" in message


@pytest.mark.parametrize("content, name", [(b"not weights", "w.safetensors"), (b"{}", "w.pt")])
def test_a_file_that_is_no_safetensors_state_dict_is_one_line(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError) as err:
        create_classifier(get_config("paper", backbone_weights=str(path), device="cpu"), 5)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
