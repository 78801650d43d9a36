"""The mini world's calibration (data/mini-world.json): every condition recorded with its command,
inside its band, and reproducible by the command it names."""
import json

import pytest

from bridgelib.cli import main
from bridgelib.mini.fashion import load_mini_part
from bridgelib.mini.calibrate import BANDS, WORLD_FILE

FIGURES = ("vanilla_full", "vanilla_4shot", "synthetic_only", "content", "domain_accuracy")


@pytest.fixture(scope="module")
def world():
    return json.loads(WORLD_FILE.read_text())


def test_every_figure_has_its_command_and_spread(world):
    for key in FIGURES:
        figure = world[key]
        assert {"mean", "std", "n", "command"} <= figure.keys(), key
        assert figure["n"] == len(figure["values"]) and figure["command"].startswith("bridge"), key
        assert min(figure["values"]) <= figure["mean"] <= max(figure["values"]), key


def test_every_condition_holds(world):
    assert world["n_test"] == len(load_mini_part("test")) >= 3000
    for key, (low, high) in BANDS.items():
        assert low <= world[key]["mean"] <= high, f"{key} {world[key]['mean']} outside {low}..{high}"
    assert world["vanilla_full"]["mean"] - world["synthetic_only"]["mean"] >= 0.15
    dsi = world["dsi"]
    assert dsi["frechet"]["template_minus_dsi_ci95"][0] > 0, "DSI must lower the Fréchet distance"
    assert dsi["domain_accuracy"]["template_minus_dsi_ci95"][0] > 0, "DSI must lower domain accuracy"
    unmet = {k for k, ok in world["within_bands"].items() if not ok}
    assert unmet <= {"dsi_costs_at_most_5_content_points"}, unmet


@pytest.mark.xfail(strict=True, reason="not met by this build: DSI costs 8.4 points of content "
                   "(0.968 -> 0.884), although its images are read at 0.99 of the judge's ceiling "
                   "on real images; a token capped harder (norm factor 1.0) cost as much")
def test_dsi_costs_at_most_5_points_of_content(world):
    assert world["dsi"]["content"]["cost_points"] <= 5


@pytest.mark.slow
def test_bridge_train_reproduces_the_recorded_vanilla_full_figure(world, tmp_path):
    """The calibration's own command, seed 0: within 2 points of the recorded seed-0 value."""
    out = tmp_path / "run"
    assert main(["train", "--profile", "mini", "--recipe", "vanilla", "--shots", "full",
                 "--seed", "0", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == world["n_test"] and metrics["n_classes"] == world["n_classes"]
    assert abs(metrics["test_acc"] - world["vanilla_full"]["values"][0]) <= 0.02
