"""trainer.algorithms against references written straight from OpenRLHF 0.11's Reinforce++
(the steps A-G listed in trainer/algorithms.py).

The references loop over samples and tokens in float64 Python/NumPy and share no code with the
module, so a vectorisation or masking slip in the module shows up as a mismatch.
"""
from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch

from trainer.algorithms import (chunked_log_probs, compute_advantages, compute_kl,
                                entropy_from_logits, log_probs_from_logits, masked_mean,
                                masked_whiten, policy_loss)

TOL = dict(rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- references

def ref_kl(d: float, estimator: str) -> float:
    if estimator == "k1":
        k = d
    elif estimator == "k2":
        k = d * d / 2
    else:
        d = max(d, -10.0)
        k = math.exp(-d) - 1 + d
    return min(max(k, -10.0), 10.0)


def ref_advantages(rewards, logp, ref_logp, mask, estimator, kl_coef, kl_estimator, gamma,
                   group_size, clip=10.0):
    """Steps A-F with explicit loops; returns (advantages, returns) as float64 arrays."""
    n, t_len = mask.shape
    shaped = np.zeros(n)
    for i in range(n):                                                   # A, B
        start = (i // group_size) * group_size
        group = [float(rewards[j]) for j in range(start, start + group_size)]
        mean = sum(group) / len(group)
        if estimator == "reinforce":
            r = float(rewards[i])
        elif estimator == "reinforce_baseline":
            r = float(rewards[i]) - mean
        elif estimator == "group_norm":
            std = math.sqrt(sum((x - mean) ** 2 for x in group) / (len(group) - 1))
            r = (float(rewards[i]) - mean) / (std + 1e-9)
        else:
            others = [float(rewards[j]) for j in range(start, start + group_size) if j != i]
            r = float(rewards[i]) - sum(others) / len(others)
        shaped[i] = min(max(r, -clip), clip)
    rho = np.zeros((n, t_len))
    for i in range(n):                                                   # C, D
        valid = [t for t in range(t_len) if mask[i, t]]
        for t in valid:
            k = 0.0 if ref_logp is None else ref_kl(float(logp[i, t]) - float(ref_logp[i, t]),
                                                    kl_estimator)
            rho[i, t] = -kl_coef * k + (shaped[i] if t == valid[-1] else 0.0)
    returns = np.zeros((n, t_len))
    for i in range(n):                                                   # E
        for t in range(t_len):
            if mask[i, t]:
                returns[i, t] = sum(gamma ** (s - t) * rho[i, s] for s in range(t, t_len))
    if estimator not in ("reinforce", "reinforce_baseline"):
        return returns.copy(), returns
    vals = [returns[i, t] for i in range(n) for t in range(t_len) if mask[i, t]]   # F
    mu = sum(vals) / max(len(vals), 1)
    var = sum((v - mu) ** 2 for v in vals) / max(len(vals), 1)
    adv = np.zeros((n, t_len))
    for i in range(n):
        for t in range(t_len):
            if mask[i, t]:
                adv[i, t] = (returns[i, t] - mu) / math.sqrt(max(var, 1e-8))
    return adv, returns


def ref_policy_loss(logp, old, adv, mask, eps_low, eps_high, num_tokens=None):
    """Step G with loops; returns (loss, d loss / d logp, clip fraction)."""
    n, t_len = mask.shape
    total, clipped, grad = 0.0, 0, np.zeros((n, t_len))
    count = num_tokens if num_tokens is not None else max(int(mask.sum()), 1)
    for i in range(n):
        for t in range(t_len):
            if not mask[i, t]:
                continue
            lr = float(logp[i, t]) - float(old[i, t])
            ratio = math.exp(min(max(lr, -20.0), 20.0))
            a = float(adv[i, t])
            unclipped = ratio * a
            clipped_val = min(max(ratio, 1 - eps_low), 1 + eps_high) * a
            total += -min(unclipped, clipped_val)
            if clipped_val < unclipped:
                clipped += 1              # the clipped (flat) branch is active: zero gradient
            elif -20.0 < lr < 20.0:
                grad[i, t] = -unclipped / count
    return total / count, grad, clipped / count


# ----------------------------------------------------------------------------- inputs

def make_mask(gen: torch.Generator, n: int, t_len: int, kind: str) -> torch.Tensor:
    if kind == "right_padded":
        lengths = torch.randint(1, t_len + 1, (n,), generator=gen)
        lengths[1] = 0                # an empty response
        lengths[2] = t_len            # a response that fills the row
        return torch.arange(t_len)[None, :] < lengths[:, None]
    mask = torch.rand(n, t_len, generator=gen) < 0.6   # arbitrary holes, e.g. tool outputs
    mask[0] = False
    mask[3, -1] = False               # last(i) is not the row's last column
    return mask


def make_batch(seed: int, mask_kind: str, n: int = 12, t_len: int = 9, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(n, generator=gen, dtype=torch.float64) * 8   # some beyond the clip
    rewards[0:4] = 1.0                # a group with zero std (group_size 2 and 4)
    rewards[4:8] = 0.5 + torch.tensor([0.0, 1e-6, 0.0, 3e-6])     # tiny std: the 1e-9 matters
    logp = -torch.rand(n, t_len, generator=gen, dtype=torch.float64) * 3
    ref = logp + torch.randn(n, t_len, generator=gen, dtype=torch.float64) * 0.7
    ref[5, :3] = logp[5, :3] + torch.tensor([12.0, -12.0, 30.0])  # KL clamps (d < -10, d > 10)
    mask = make_mask(gen, n, t_len, mask_kind)
    return rewards.to(dtype), logp.to(dtype), ref.to(dtype), mask


# ----------------------------------------------------------------------------- steps A-F

GRID = list(itertools.product(["reinforce", "reinforce_baseline", "group_norm", "rloo"],
                              ["k1", "k2", "k3"], [1.0, 0.9], [True, False],
                              ["right_padded", "arbitrary"]))


@pytest.mark.parametrize("estimator,kl_est,gamma,use_ref,mask_kind", GRID)
def test_advantages_match_reference(estimator, kl_est, gamma, use_ref, mask_kind):
    rewards, logp, ref, mask = make_batch(zlib.crc32(f"{estimator}{kl_est}{gamma}".encode()), mask_kind)
    group_size = 2 if estimator == "rloo" else 4
    kwargs = dict(estimator=estimator, kl_coef=0.05, kl_estimator=kl_est, gamma=gamma,
                  group_size=group_size)
    adv, ret = compute_advantages(rewards, logp, ref if use_ref else None, mask, **kwargs)
    want_adv, want_ret = ref_advantages(rewards.numpy(), logp.numpy(),
                                        ref.numpy() if use_ref else None, mask.numpy(),
                                        estimator, 0.05, kl_est, gamma, group_size)
    np.testing.assert_allclose(ret.numpy(), want_ret, **TOL)
    np.testing.assert_allclose(adv.numpy(), want_adv, **TOL)


@pytest.mark.parametrize("estimator", ["reinforce", "reinforce_baseline", "group_norm", "rloo"])
def test_advantages_float32_inputs(estimator):
    gen = torch.Generator().manual_seed(7)
    n, t_len = 16, 40
    rewards = (torch.rand(n, generator=gen) < 0.4).float()           # binary all-pass reward
    logp = -torch.rand(n, t_len, generator=gen) * 4
    ref = logp + torch.randn(n, t_len, generator=gen) * 0.3
    mask = make_mask(gen, n, t_len, "right_padded")
    adv, ret = compute_advantages(rewards, logp, ref, mask, estimator=estimator, group_size=4)
    assert adv.dtype == torch.float32 and ret.dtype == torch.float32
    want_adv, want_ret = ref_advantages(rewards.double().numpy(), logp.double().numpy(),
                                        ref.double().numpy(), mask.numpy(), estimator, 0.01,
                                        "k1", 1.0, 4)
    np.testing.assert_allclose(ret.numpy(), want_ret, **TOL)
    np.testing.assert_allclose(adv.numpy(), want_adv, **TOL)


def test_whitened_advantages_have_zero_mean_unit_population_std():
    rewards, logp, ref, mask = make_batch(3, "arbitrary")
    adv, _ = compute_advantages(rewards, logp, ref, mask, estimator="reinforce")
    vals = adv[mask]
    assert abs(vals.mean().item()) < 1e-9
    assert abs(vals.pow(2).mean().item() - 1.0) < 1e-9        # population, not Bessel-corrected
    assert (adv[~mask] == 0).all()


def test_advantages_carry_no_gradient():
    rewards, logp, ref, mask = make_batch(4, "right_padded")
    adv, ret = compute_advantages(rewards, logp.requires_grad_(True), ref, mask)
    assert not adv.requires_grad and not ret.requires_grad


def test_reward_clip_is_applied_after_the_baseline():
    mask = torch.ones(2, 3, dtype=torch.bool)
    rewards = torch.tensor([100.0, 95.0], dtype=torch.float64)
    _, ret = compute_advantages(rewards, None, None, mask, estimator="reinforce_baseline",
                                group_size=2)
    assert ret[:, 0].tolist() == [2.5, -2.5]                   # clipping first would give 0, 0
    _, ret = compute_advantages(rewards, None, None, mask, estimator="reinforce")
    assert ret[:, 0].tolist() == [10.0, 10.0]
    _, ret = compute_advantages(rewards, None, None, mask, reward_clip=None)
    assert ret[:, 0].tolist() == [100.0, 95.0]


def test_compute_kl_matches_reference():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(200, generator=gen, dtype=torch.float64) * 6
    b = torch.randn(200, generator=gen, dtype=torch.float64) * 6
    for est in ("k1", "k2", "k3"):
        want = np.array([ref_kl(x - y, est) for x, y in zip(a.tolist(), b.tolist())])
        np.testing.assert_allclose(compute_kl(a, b, est).numpy(), want, **TOL)
    assert compute_kl(a.half(), b.half()).dtype == torch.float32
    # k3 clamps d >= -10 before exp(-d): a -inf log-prob gives the cap, not nan.
    k3 = compute_kl(torch.tensor([-math.inf, 0.0]), torch.tensor([-1.0, math.inf]), "k3")
    assert k3.tolist() == [10.0, 10.0]


def test_masked_helpers():
    x = torch.tensor([[1.0, 2.0, float("inf")], [4.0, float("nan"), 0.0]])
    m = torch.tensor([[True, True, False], [True, False, False]])
    assert masked_mean(x, m).item() == pytest.approx(7 / 3)
    assert masked_mean(x, m, dim=1).tolist() == [1.5, 4.0]
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0
    w = masked_whiten(x, m)
    vals = np.array([1.0, 2.0, 4.0])
    want = (vals - vals.mean()) / vals.std()                  # numpy std is the population std
    np.testing.assert_allclose(w[m].numpy(), want, rtol=1e-6)
    assert (w[~m] == 0).all()


# ----------------------------------------------------------------------------- step G

def policy_batch(seed: int, n: int = 6, t_len: int = 10):
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(n, t_len, generator=gen, dtype=torch.float64) * 3
    logp = old + torch.randn(n, t_len, generator=gen, dtype=torch.float64) * 0.4
    logp[0, :2] = old[0, :2] + torch.tensor([25.0, -25.0])   # beyond the +-20 log-ratio clamp
    adv = torch.randn(n, t_len, generator=gen, dtype=torch.float64)
    adv[0, 0] = -0.5                  # ratio = e^20, not e^25, enters the unclipped branch
    mask = make_mask(gen, n, t_len, "arbitrary")
    mask[0, :2] = True
    return logp, old, adv, mask


@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.1, 0.3)])
def test_policy_loss_matches_reference(eps_low, eps_high):
    logp, old, adv, mask = policy_batch(1)
    ratio, a = (logp - old).exp(), adv
    assert ((ratio > 1 + eps_high) & (a > 0) & mask).any()     # clipped from above
    assert ((ratio < 1 - eps_low) & (a < 0) & mask).any()      # clipped from below
    logp.requires_grad_(True)
    loss, stats = policy_loss(logp, old, adv, mask, eps_clip_low=eps_low, eps_clip_high=eps_high)
    loss.backward()
    want, want_grad, want_clip = ref_policy_loss(logp.detach().numpy(), old.numpy(), adv.numpy(),
                                                 mask.numpy(), eps_low, eps_high)
    assert loss.item() == pytest.approx(want, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(logp.grad.numpy(), want_grad, **TOL)
    assert stats["clip_frac"].item() == pytest.approx(want_clip)
    assert not stats["approx_kl"].requires_grad and stats["approx_kl"].item() > 0


def test_policy_loss_num_tokens_aggregates_micro_batches():
    logp, old, adv, mask = policy_batch(2, n=8)
    total = int(mask.sum())
    full_lp = logp.clone().requires_grad_(True)
    full, full_stats = policy_loss(full_lp, old, adv, mask)
    full.backward()
    parts_lp = logp.clone().requires_grad_(True)
    parts, clip = 0.0, 0.0
    for sl in (slice(0, 3), slice(3, 8)):                      # unequal micro-batches
        loss, stats = policy_loss(parts_lp[sl], old[sl], adv[sl], mask[sl], num_tokens=total)
        loss.backward()
        parts, clip = parts + loss.item(), clip + stats["clip_frac"].item()
    assert parts == pytest.approx(full.item(), rel=1e-10)
    assert clip == pytest.approx(full_stats["clip_frac"].item(), rel=1e-10)
    torch.testing.assert_close(parts_lp.grad, full_lp.grad)
    # A per-micro-batch mean is NOT the step's token mean: the aggregation matters here.
    naive = sum(policy_loss(logp[sl], old[sl], adv[sl], mask[sl])[0].item()
                for sl in (slice(0, 3), slice(3, 8))) / 2
    assert abs(naive - full.item()) > 1e-3


def test_policy_loss_empty_mask_is_zero():
    logp, old, adv, mask = policy_batch(3)
    loss, stats = policy_loss(logp, old, adv, torch.zeros_like(mask))
    assert loss.item() == 0.0 and stats["clip_frac"].item() == 0.0


# ----------------------------------------------------------------------------- log-probs

def test_log_probs_and_entropy_from_logits_match_reference():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, 11, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 11, (3, 5), generator=gen)
    temp = 0.7
    want_lp, want_ent = np.zeros((3, 5)), np.zeros((3, 5))
    for i, j in itertools.product(range(3), range(5)):
        z = [v / temp for v in logits[i, j].tolist()]
        log_z = math.log(sum(math.exp(v) for v in z))
        want_lp[i, j] = z[labels[i, j]] - log_z
        zt = logits[i, j].tolist()
        log_zt = math.log(sum(math.exp(v) for v in zt))
        want_ent[i, j] = -sum(math.exp(v - log_zt) * (v - log_zt) for v in zt)
    for chunk in (1, 4, 100):
        got = log_probs_from_logits(logits, labels, temperature=temp, chunk_size=chunk)
        np.testing.assert_allclose(got.numpy(), want_lp, **TOL)
    np.testing.assert_allclose(entropy_from_logits(logits).numpy(), want_ent, **TOL)
    assert log_probs_from_logits(logits.bfloat16(), labels).dtype == torch.float32


def lm_head_case(seed: int, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 7, 16, generator=gen, dtype=torch.float64)
    weight = torch.randn(50, 16, generator=gen, dtype=torch.float64) * 0.3
    labels = torch.randint(0, 50, (2, 7), generator=gen)
    return hidden.to(device, dtype), weight.to(device, dtype), labels.to(device)


@pytest.mark.parametrize("chunk_size,use_checkpoint", [(1, True), (3, True), (5, False),
                                                        (14, True), (1000, True)])
def test_chunked_log_probs_equal_unchunked(chunk_size, use_checkpoint):
    hidden, weight, labels = lm_head_case(5)
    temp = 0.8
    h1, w1 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    logits = (h1 @ w1.T) / temp
    want_lp = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    want_ent = entropy_from_logits(logits)
    (want_lp.sum() + 0.3 * want_ent.sum()).backward()
    h2, w2 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    lp, ent = chunked_log_probs(h2, w2, labels, temp, chunk_size, return_entropy=True,
                                use_checkpoint=use_checkpoint)
    (lp.sum() + 0.3 * ent.sum()).backward()
    torch.testing.assert_close(lp, want_lp.detach(), **TOL)
    torch.testing.assert_close(ent, want_ent.detach(), **TOL)
    torch.testing.assert_close(h2.grad, h1.grad, **TOL)
    torch.testing.assert_close(w2.grad, w1.grad, **TOL)
    only_lp = chunked_log_probs(hidden, weight, labels, temp, chunk_size)
    torch.testing.assert_close(only_lp, want_lp.detach(), **TOL)


@pytest.mark.parametrize("use_checkpoint", [True, False])
def test_chunked_log_probs_checkpoint_does_not_keep_logits(use_checkpoint):
    hidden, weight, labels = lm_head_case(6)
    hidden.requires_grad_(True)
    vocab, chunk = weight.size(0), 4
    saved: list[tuple[int, ...]] = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp = chunked_log_probs(hidden, weight, labels, 1.0, chunk, use_checkpoint=use_checkpoint)
    lp.sum().backward()
    kept_logits = any(s[-1] == vocab and s[0] <= chunk for s in saved)   # [tokens, V] blocks
    assert kept_logits is not use_checkpoint


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs,match", [
    (dict(estimator="ppo"), "unknown estimator 'ppo'.*group_norm"),
    (dict(kl_estimator="k4"), "unknown kl_estimator"),
    (dict(estimator="rloo", group_size=1), "group_size >= 2"),
    (dict(estimator="group_norm", group_size=5), "divide the number of samples"),
    (dict(group_size=0), "group_size=0"),
    (dict(gamma=1.5), "gamma"),
    (dict(reward_clip=0.0), "reward_clip"),
])
def test_compute_advantages_rejects_bad_options(kwargs, match):
    rewards, logp, ref, mask = make_batch(0, "right_padded")
    with pytest.raises(ValueError, match=match):
        compute_advantages(rewards, logp, ref, mask, **kwargs)


def test_compute_advantages_rejects_bad_shapes():
    rewards, logp, ref, mask = make_batch(0, "right_padded")
    with pytest.raises(ValueError, match="rewards must have shape"):
        compute_advantages(rewards[:-1], logp, ref, mask)
    with pytest.raises(ValueError, match="ref_log_probs must have"):
        compute_advantages(rewards, logp, ref[:, :-1], mask)
    with pytest.raises(ValueError, match="bool"):
        compute_advantages(rewards, logp, ref, mask.float())
    with pytest.raises(ValueError, match="without log_probs"):
        compute_advantages(rewards, None, ref, mask)
    with pytest.raises(ValueError, match="share a shape"):
        policy_loss(logp, ref, logp[:, :-1], mask)
    with pytest.raises(ValueError, match="bool"):
        policy_loss(logp, ref, logp, mask.long())
    with pytest.raises(ValueError, match="labels"):
        chunked_log_probs(torch.zeros(2, 3, 4), torch.zeros(5, 4), torch.zeros(2, 4).long())


# ----------------------------------------------------------------------------- devices

def test_functions_have_no_host_round_trips():
    """On the meta device any .item(), .cpu() or value-dependent branch raises."""
    meta = dict(device="meta")
    mask = torch.empty(8, 5, dtype=torch.bool, **meta)
    lp = torch.empty(8, 5, **meta)
    for est in ("reinforce", "reinforce_baseline", "group_norm", "rloo"):
        for gamma in (1.0, 0.9):
            adv, ret = compute_advantages(torch.empty(8, **meta), lp, lp, mask, estimator=est,
                                          group_size=4, gamma=gamma, kl_estimator="k3")
            assert adv.device.type == ret.device.type == "meta"
    loss, stats = policy_loss(lp, lp, lp, mask, num_tokens=17)
    assert loss.device.type == "meta" and stats["clip_frac"].device.type == "meta"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_without_host_syncs():
    rewards, logp, ref, mask = make_batch(11, "arbitrary", n=64, t_len=300, dtype=torch.float32)
    rewards = (rewards > 0).float()
    cuda = [x.cuda() for x in (rewards, logp, ref, mask)]
    for est in ("reinforce", "reinforce_baseline", "group_norm", "rloo"):
        kwargs = dict(estimator=est, group_size=4, gamma=1.0, kl_estimator="k3")
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            adv_gpu, ret_gpu = compute_advantages(*cuda, **kwargs)
            loss_gpu, _ = policy_loss(cuda[1] + 0.1, cuda[1], adv_gpu, cuda[3])
        finally:
            torch.cuda.set_sync_debug_mode("default")
        adv, ret = compute_advantages(rewards, logp, ref, mask, **kwargs)
        loss, _ = policy_loss(logp + 0.1, logp, adv, mask)
        assert adv_gpu.is_cuda
        torch.testing.assert_close(adv_gpu.cpu(), adv, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ret_gpu.cpu(), ret, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(loss_gpu.cpu(), loss, rtol=1e-4, atol=1e-4)
    hidden, weight, labels = lm_head_case(12, torch.bfloat16, "cuda")
    hidden.requires_grad_(True)
    lp = chunked_log_probs(hidden, weight, labels, 1.0, chunk_size=5)
    lp.sum().backward()
    want = torch.log_softmax((hidden @ weight.T).float(), -1).gather(-1, labels[..., None])
    assert lp.dtype == torch.float32 and hidden.grad is not None
    torch.testing.assert_close(lp, want.squeeze(-1).detach(), rtol=1e-5, atol=1e-5)
