"""`python -m bridgelib ...` is the `bridge` command."""
import sys

from bridgelib.cli import main

sys.exit(main())
