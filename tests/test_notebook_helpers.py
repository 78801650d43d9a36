"""bridgelib.notebook's helpers for the course pages: the config table, shots in numeric order,
and the check that generated images show a folder's classes (notebook 07)."""
import pandas as pd
import torch

import bridgelib as bl
from bridgelib.notebook import config_table, drawn_as_own_class, order_shots


def test_config_table_is_short_and_names_fields_in_words():
    table = config_table(bl.get_config("mini"))
    assert 5 <= len(table) <= 20 and "real stage: epochs" in table.index
    assert table.loc["real stage: epochs", "value"].isdigit()


def test_order_shots_puts_full_last_and_numbers_in_order():
    t = pd.DataFrame([[1, 2, 3, 4]], columns=pd.Index([16, "full", 2, 1], name="shots"))
    assert list(order_shots(t).columns) == [1, 2, 16, "full"]


def test_drawn_as_own_class_tells_real_classes_from_shuffled_labels():
    cfg = bl.get_config("mini")
    pool = bl.load_dataset(cfg, "train")  # 100 per class
    real, shown = bl.kshot_subset(pool, 20, 0), bl.kshot_subset(pool, 20, 1)
    rate, p, per_class = drawn_as_own_class(shown, real, cfg)
    assert rate > 0.4 and p < 1e-6 and len(per_class) == 10  # real garments look like their class
    g = torch.Generator().manual_seed(0)
    shuffled = bl.ImageSet(shown.images, shown.labels[torch.randperm(len(shown), generator=g)],
                           shown.class_names)
    rate, p, _ = drawn_as_own_class(shuffled, real, cfg)
    assert rate < 0.25 and p > 0.001  # labels that mean nothing: about chance (10%)
