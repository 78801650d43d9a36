"""Tests run offline, quietly, in the mini profile (a caller's explicit settings win)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BRIDGELIB_PROGRESS", "0")
os.environ.setdefault("BRIDGELIB_PROFILE", "mini")
