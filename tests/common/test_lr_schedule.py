"""The learning-rate schedule both trainers use: OpenRLHF's cosine_with_min_lr, pinned to the formula
and to transformers' implementation of it."""
import math

import pytest
import torch

from common.lr_schedule import warmup_cosine_factor


def factor(step, max_steps=100, lr_warmup_ratio=0.1, min_lr_ratio=0.1):
    return warmup_cosine_factor(step, max_steps=max_steps, lr_warmup_ratio=lr_warmup_ratio, min_lr_ratio=min_lr_ratio)


def test_values_at_warmup_start_end_midpoint_and_end():
    # max_steps 100, warmup ceil(100 * 0.1) = 10 steps, floor 0.1
    assert factor(0) == 0.0  # the first step of a warmup runs at lr 0, as in OpenRLHF
    assert factor(5) == pytest.approx(0.5)
    assert factor(9) == pytest.approx(0.9)
    assert factor(10) == pytest.approx(1.0)  # warmup ends at the peak
    assert factor(55) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay: cos(pi/2) = 0
    assert factor(40) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 3)))
    assert factor(100) == pytest.approx(0.1)  # the end: the floor
    assert factor(150) == pytest.approx(0.1)  # and past it
    # warmup rounds up: ceil(10 * 0.03) = 1 step
    assert factor(0, max_steps=10, lr_warmup_ratio=0.03) == 0.0
    assert factor(1, max_steps=10, lr_warmup_ratio=0.03) == pytest.approx(1.0)
    # no warmup: the first step runs at the peak
    assert factor(0, lr_warmup_ratio=0.0) == pytest.approx(1.0)
    assert factor(100, lr_warmup_ratio=0.0, min_lr_ratio=0.0) == pytest.approx(0.0)


@pytest.mark.parametrize("max_steps, warmup_ratio, min_ratio", [(100, 0.1, 0.1), (14, 0.1, 0.1), (10, 0.03, 0.1),
                                                                (7, 0.0, 0.0), (3, 0.5, 0.2)])
def test_matches_transformers_cosine_with_min_lr_as_openrlhf_calls_it(max_steps, warmup_ratio, min_ratio):
    from transformers import get_scheduler

    lr = 1e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    hf = get_scheduler("cosine_with_min_lr", opt, num_warmup_steps=math.ceil(max_steps * warmup_ratio),
                       num_training_steps=max_steps, scheduler_specific_kwargs={"min_lr": lr * min_ratio})
    for step in range(max_steps + 1):
        assert hf.get_last_lr()[0] == pytest.approx(lr * factor(step, max_steps, warmup_ratio, min_ratio), abs=1e-15)
        opt.step()
        hf.step()
