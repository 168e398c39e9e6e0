"""Deprecated: `python -m rewards.train_rm` is now `python -m apps.train_rm` (see __main__.py)."""
