"""The DeepSpeed policy worker on CPU: its log-probs and its gradient steps against plain PyTorch."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from common.net import free_port
from trainer.algorithms import compute_advantages, policy_loss
from trainer.config import RLConfig
from trainer.engines.base import Completion
from trainer.experience import PromptItem, build_experience, position_ids
from trainer.policy import PolicyWorker


def experience(pad_id):
    g = torch.Generator().manual_seed(0)
    comps = []
    for i in range(4):
        p = tuple(torch.randint(0, 300, (5 + i,), generator=g).tolist())
        r = tuple(torch.randint(0, 300, (3 + 2 * i,), generator=g).tolist())
        comps.append(Completion(i // 2, i % 2, p, r, tuple([0.0] * len(r)), "stop"))
    return build_experience([PromptItem("a", (), {}), PromptItem("b", (), {})], comps, pad_id, 2)


def reference_log_probs(model, exp, temperature):
    out = model(input_ids=exp.sequences, attention_mask=exp.attention_mask,
                position_ids=position_ids(exp.attention_mask)).logits
    T = exp.num_actions
    lp = torch.log_softmax(out[:, -T - 1:-1].float() / temperature, -1)
    return lp.gather(-1, exp.sequences[:, -T:].unsqueeze(-1)).squeeze(-1) * exp.action_mask


def worker(tiny_model, stage, port, packed=False):
    cfg = RLConfig()
    cfg.train.packing_samples = packed
    cfg.model.pretrain = tiny_model
    cfg.model.gradient_checkpointing = False
    cfg.train.zero_stage = stage
    cfg.train.actor_num_gpus_per_node = 0
    cfg.train.train_batch_size, cfg.train.micro_train_batch_size = 4, 2  # two micro-batches per step
    cfg.train.actor_learning_rate = 1e-3
    cfg.train.logprob_chunk_size = 6  # several chunks per row
    return PolicyWorker(cfg, tiny_model, train=True, total_steps=10, master_port=port)


@pytest.mark.parametrize("stage, packed", [(2, False), (3, False), (2, True), (3, True)])
def test_log_probs_and_one_accumulated_step_match_plain_pytorch(tiny_model, stage, packed):
    """Packed micro-batches (one row, no padding) must give the padded path's numbers exactly."""
    from transformers import AutoTokenizer

    pad = AutoTokenizer.from_pretrained(tiny_model).pad_token_id
    exp = experience(pad)
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    with torch.no_grad():
        ref_lp = reference_log_probs(ref_model, exp, 0.7)
    w = worker(tiny_model, stage, free_port(), packed)
    lp = w.compute_log_probs(exp, 0.7)
    assert torch.allclose(lp, ref_lp, atol=1e-5)

    exp.old_log_probs = w.compute_log_probs(exp, 1.0)
    exp.rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    exp.advantages, exp.returns = compute_advantages(exp.rewards, exp.old_log_probs, None, exp.action_mask,
                                                     estimator="reinforce_baseline", group_size=2)
    stats = w.train_steps([exp], [float(exp.action_mask.sum())], 1.0)
    # the same step in plain PyTorch: both micro-batches' gradients accumulate into one step
    n = float(exp.action_mask.sum())
    for part in ([0, 1], [2, 3]):
        mb = exp.select(part)
        loss, _ = policy_loss(reference_log_probs(ref_model, mb, 1.0), mb.old_log_probs, mb.advantages,
                              mb.action_mask, num_tokens=n)
        loss.backward()
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in ref_model.parameters()))
    assert stats["grad_norm"] == pytest.approx(float(norm), rel=1e-4)


def test_fused_old_log_probs_give_the_recomputed_update(tiny_model):
    """old_log_probs=None (one on-policy update: the controller skips the log-prob pass) must take the
    step the recomputed old log-probs take, and measure the engine gap in that forward."""
    from transformers import AutoTokenizer

    pad = AutoTokenizer.from_pretrained(tiny_model).pad_token_id
    stats, weights = [], []
    for fused in (False, True):
        exp = experience(pad)
        w = worker(tiny_model, 2, free_port())
        lp = w.compute_log_probs(exp, 1.0)
        exp.engine_log_probs = (lp + 0.25) * exp.action_mask  # an engine 0.25 nats off on every token
        exp.old_log_probs = None if fused else lp
        exp.rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
        exp.advantages, exp.returns = compute_advantages(exp.rewards, lp, None, exp.action_mask,
                                                         estimator="reinforce_baseline", group_size=2)
        stats.append(w.train_steps([exp], [float(exp.action_mask.sum())], 1.0))
        weights.append(torch.cat([p.detach().flatten() for p in w.lm.parameters()]))
    assert stats[1]["grad_norm"] == pytest.approx(stats[0]["grad_norm"], rel=1e-5)
    assert stats[1]["policy_loss"] == pytest.approx(stats[0]["policy_loss"], rel=1e-5, abs=1e-7)
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
    assert stats[1]["engine_logprob_gap"] == pytest.approx(0.25, abs=1e-4)
    assert stats[0]["engine_logprob_gap"] == 0.0  # measured by the controller's pass instead


def test_cpu_bf16_autocast_runs_the_forward_in_bf16(tiny_model):
    from transformers import AutoTokenizer

    exp = experience(AutoTokenizer.from_pretrained(tiny_model).pad_token_id)
    w = worker(tiny_model, 2, free_port())
    fp32 = w.compute_log_probs(exp, 1.0)
    w.cfg.model.cpu_bf16_autocast = True
    bf16 = w.compute_log_probs(exp, 1.0)
    assert bf16.dtype == torch.float32  # logits upcast before the softmax
    assert not torch.equal(bf16, fp32)  # bf16 matmuls really ran
    assert torch.allclose(bf16, fp32, atol=0.1)
    exp.old_log_probs, exp.rewards = None, torch.tensor([1.0, 0.0, 1.0, 0.0])
    exp.advantages, exp.returns = compute_advantages(exp.rewards, fp32, None, exp.action_mask,
                                                     estimator="reinforce_baseline", group_size=2)
    stats = w.train_steps([exp], [float(exp.action_mask.sum())], 1.0)
    assert stats["grad_norm"] > 0 and all(p.dtype == torch.float32 for p in w.lm.parameters())
