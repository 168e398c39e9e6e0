"""Deprecated entry point: `python -m rewards.bon_eval` runs `python -m apps.bon_eval` (removed in the next release).

It hands over with runpy rather than an import, so rewards never imports apps (tests/test_layers.py).
"""
import runpy
import warnings

warnings.warn("python -m rewards.bon_eval is deprecated; run python -m apps.bon_eval", DeprecationWarning, stacklevel=1)
runpy.run_module("apps.bon_eval", run_name="__main__", alter_sys=True)
