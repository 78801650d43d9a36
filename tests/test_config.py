"""Profiles resolve, overrides are validated, and a saved config reloads equal."""
import json

import pytest

from bridgelib.config import (PROFILE_ENV, PROFILES, RULES, Config, ConfigError, field_names,
                              get_config, load_config, parse_value)


def test_default_profile_is_mini(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert get_config().profile == "mini"


def test_env_var_selects_profile_and_argument_wins(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "paper")
    assert get_config().profile == "paper"
    assert get_config("workshop").profile == "workshop"


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_resolves(profile):
    cfg = get_config(profile)
    assert isinstance(cfg, Config) and cfg.profile == profile


def test_mini_profile_is_offline():
    cfg = get_config("mini")
    assert cfg.dataset == "fashion-mnist"
    assert cfg.backbone_weights != "timm"  # shipped weights, not the hub's


def test_profiles_do_not_share_state():
    get_config("mini", **{"train.real.epochs": 1})
    get_config("workshop")  # built by editing a fresh paper config
    assert get_config("mini").train.real.epochs != 1
    assert get_config("paper").dataset == "aircraft"


@pytest.mark.parametrize("set_by", ["argument", "env"])
def test_unknown_profile_is_a_one_line_error(monkeypatch, set_by):
    monkeypatch.setenv(PROFILE_ENV, "laptop")
    with pytest.raises(ConfigError) as err:
        get_config("laptop") if set_by == "argument" else get_config()
    msg = str(err.value)
    assert "laptop" in msg and all(p in msg for p in PROFILES) and "\n" not in msg


@pytest.mark.parametrize("field, value", [
    ("train.real.epochs", 0),
    ("train.synthetic.lr", -0.1),
    ("generation.resolution", 30),
    ("generation.template", "fancy"),
    ("generation.guidance", "high"),
    ("train.mixed_real_fraction", 1.5),
    ("device", "tpu"),
    ("device", "cuda:x"),
    ("train.real.momentum", 1.0),
    ("train.real.momentum", "abc"),
    ("train.synthetic.weight_decay", -1e-4),
    ("train.mixup_alpha", -0.2),
    ("train.match_compute", 1),            # booleans are bools
    ("seed", True),                        # and bools are not integers
    ("generation.scheduler", "fancy"),
    ("generation.dtype", "float64"),
    ("generation.guidance", float("nan")),
    ("invert.lr", float("inf")),
    ("backbone_kwargs", "channels"),
    ("invert.token", ""),
])
def test_invalid_value_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        get_config("mini", **{field: value})
    message = str(err.value)
    assert message.startswith(f"{field}={value!r} is invalid; expected ") and "\n" not in message


def test_mixup_has_one_knob():
    """train.mixup_alpha is the only Mixup setting; a stage-level one is an unknown field."""
    with pytest.raises(ConfigError, match="train.synthetic.mixup_alpha"):
        get_config("mini", **{"train.synthetic.mixup_alpha": 0.2})


def test_every_field_has_a_rule():
    assert list(RULES) == field_names()


@pytest.mark.parametrize("field, text, value", [
    ("train.real.epochs", "3", 3),
    ("train.real.lr", "1e-3", 1e-3),
    ("generation.guidance", "5", 5.0),
    ("train.match_compute", "False", False),
    ("train.match_compute", "yes", True),
    ("train.mixed_real_fraction", "None", None),
    ("train.mixed_real_fraction", "0.25", 0.25),
    ("backbone_kwargs", '{"channels": [8, 16]}', {"channels": [8, 16]}),
    ("generation.negative_prompt", "blurry, text", "blurry, text"),
    ("train.real.momentum", "abc", "abc"),  # unparsable: left for validation to refuse
])
def test_parse_value_reads_the_declared_type(field, text, value):
    assert parse_value(field, text) == value and type(parse_value(field, text)) is type(value)


def test_parsed_text_is_validated_like_any_value():
    with pytest.raises(ConfigError, match=r"^train\.real\.momentum='abc' is invalid; expected a "
                                          r"number in \[0, 1\)$"):
        get_config("mini", **{"train.real.momentum": parse_value("train.real.momentum", "abc")})
    assert get_config("mini", **{"train.real.momentum": parse_value("train.real.momentum", "0")}
                      ).train.real.momentum == 0.0


@pytest.mark.parametrize("field, nearest", [
    ("train.real.epoch", "train.real.epochs"),
    ("momentum", "train.real.momentum"),
    ("generation.guidence", "generation.guidance"),
])
def test_unknown_field_suggests_the_nearest(field, nearest):
    with pytest.raises(ConfigError, match=f"did you mean [^?]*{nearest.replace('.', '[.]')}"):
        parse_value(field, "1")


@pytest.mark.parametrize("field", ["train.real.epoch", "nonsense", "generation.resolution.x"])
def test_unknown_field_names_the_field(field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        get_config("mini", **{field: 1})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("profile", PROFILES)
def test_save_load_round_trip(tmp_path, profile):
    cfg = get_config(profile, seed=3, **{"train.mixed_real_fraction": 0.5})
    path = cfg.save(tmp_path / "config.json")
    loaded = load_config(path)
    assert loaded.to_dict() == cfg.to_dict()
    assert loaded == cfg


def test_str_is_json():
    cfg = get_config("mini")
    assert json.loads(str(cfg)) == cfg.to_dict()


def test_paper_backbone_table_applies_before_explicit_overrides():
    from bridgelib.config import PAPER_BACKBONES
    vit = get_config("paper", backbone="vit_large_patch16_224")
    assert (vit.train.real.lr, vit.train.real.batch_size) == (1e-3, 32)
    assert get_config("paper", backbone="vit_base_patch16_224",
                      **{"train.real.lr": 0.1}).train.real.lr == 0.1
    assert set(PAPER_BACKBONES) >= {"resnet18", "resnet50", "vit_base_patch16_224",
                                    "vit_large_patch16_224"}
    # mini keeps its own recipe whatever the backbone name
    assert get_config("mini", backbone="resnet18").train.real.lr == get_config("mini").train.real.lr
