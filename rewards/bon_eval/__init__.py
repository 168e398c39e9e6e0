"""Deprecated: `python -m rewards.bon_eval` is now `python -m apps.bon_eval` (see __main__.py)."""
