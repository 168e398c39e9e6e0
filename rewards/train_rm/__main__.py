"""Deprecated entry point: `python -m rewards.train_rm` runs `python -m apps.train_rm` (removed in the next release).

It hands over with runpy rather than an import, so rewards never imports apps (tests/test_layers.py).
"""
import runpy
import warnings

warnings.warn("python -m rewards.train_rm is deprecated; run python -m apps.train_rm", DeprecationWarning, stacklevel=1)
runpy.run_module("apps.train_rm", run_name="__main__", alter_sys=True)
