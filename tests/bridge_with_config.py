"""`bridge ARGS...` with config overrides, for tests that start the real command as a subprocess.

    BRIDGE_TEST_OVERRIDES='{"train.real.epochs": 3}' python tests/bridge_with_config.py train ...

The overrides (dotted config fields, as `get_config` takes them) are applied to the config the
command resolves from --profile/--dataset; everything else is `bridgelib.cli.main` unchanged.
Not collected by pytest (no test_ prefix).
"""
import json
import os
import sys

import bridgelib.cli as cli
from bridgelib import config


def with_overrides(resolve, overrides: dict):
    """Wrap cli._config so the resolved config gets `overrides` (validated like any config)."""
    def _config(args):
        cfg = resolve(args)
        for key, value in overrides.items():
            config._set(cfg, key, value)
        config._validate(cfg)
        return cfg
    return _config


if __name__ == "__main__":
    cli._config = with_overrides(cli._config, json.loads(os.environ.get("BRIDGE_TEST_OVERRIDES") or "{}"))
    sys.exit(cli.main(sys.argv[1:]))
