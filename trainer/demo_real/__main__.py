"""Deprecated entry point: `python -m trainer.demo_real` runs `python -m apps.demo_real` (removed in the next release).

It hands over with runpy rather than an import, so trainer never imports apps (tests/test_layers.py).
"""
import runpy
import warnings

warnings.warn("python -m trainer.demo_real is deprecated; run python -m apps.demo_real", DeprecationWarning,
              stacklevel=1)
runpy.run_module("apps.demo_real", run_name="__main__", alter_sys=True)
