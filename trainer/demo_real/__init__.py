"""Deprecated: `python -m trainer.demo_real` is now `python -m apps.demo_real` (see __main__.py)."""
