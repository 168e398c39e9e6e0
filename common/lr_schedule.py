"""The learning-rate schedule of both trainers: OpenRLHF's, linear warmup then cosine decay to a floor.

OpenRLHF builds it with transformers' ``get_scheduler("cosine_with_min_lr", optimizer,
num_warmup_steps=ceil(max_steps * lr_warmup_ratio), num_training_steps=max_steps,
scheduler_specific_kwargs={"min_lr": learning_rate * 0.1})``; here the floor is the option
``min_lr_ratio`` (default 0.1, OpenRLHF's fixed value). A pure function of the step, so it is wrapped
in ``torch.optim.lr_scheduler.LambdaLR`` (whose ``last_epoch`` DeepSpeed checkpoints restore).
"""
from __future__ import annotations

import math


def warmup_cosine_factor(step: int, *, max_steps: int, lr_warmup_ratio: float, min_lr_ratio: float) -> float:
    """The multiplier of the peak learning rate after ``step`` optimizer steps.

    warmup = ceil(max_steps * lr_warmup_ratio)
    step < warmup:  step / warmup                       (so the first step of a warmup runs at 0)
    otherwise:      min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * progress)) / 2,
                    progress = (step - warmup) / max(1, max_steps - warmup), at most 1

    Up to ``max_steps`` this is transformers' cosine_with_min_lr exactly; past it the factor stays
    at ``min_lr_ratio`` (transformers' would climb back along the cosine).
    """
    warmup = math.ceil(max_steps * lr_warmup_ratio)
    if step < warmup:
        return step / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
