"""Applications that combine several packages: reward-model training (``python -m apps.train_rm``),
best-of-N evaluation (``python -m apps.bon_eval``) and the real-model RL demo (``python -m apps.demo_real``).
They sit on top of the package layers (common, sandbox, rewards, trainer, data_prep): nothing imports them.
"""
