"""Reinforce++ math as OpenRLHF 0.11 computes it, step by step (A-G below).

Pure torch functions: no Ray, no DeepSpeed, no model code. Everything runs on the device its inputs
live on and is vectorised over samples. Shapes: N samples, T response positions, V vocabulary.
Action masks are boolean [N, T]; the samples of one prompt are contiguous, ``group_size`` at a time.

    A  baseline        _baseline()             r~ = r, r - mean_g, (r - mean_g)/(std_g + 1e-9), RLOO
    B  clip            compute_advantages()    r~ in [-10, 10]
    C  per-token KL    compute_kl()            k1 = d, k2 = d^2/2, k3 = exp(-d) - 1 + d
    D  token reward    compute_advantages()    rho = m * (-beta * k + [t == last] * r~)
    E  return-to-go    discounted_returns()    G_t = sum_{s >= t} gamma^(s-t) rho_s
    F  whitening       masked_whiten()         over all action tokens (reinforce, reinforce_baseline)
    G  clipped loss    policy_loss()           token mean over the whole optimizer step
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ESTIMATORS = ("reinforce", "reinforce_baseline", "group_norm", "rloo")
KL_ESTIMATORS = ("k1", "k2", "k3")
_GROUP_ESTIMATORS = ("reinforce_baseline", "group_norm", "rloo")
_WHITENED_ESTIMATORS = ("reinforce", "reinforce_baseline")


# ----------------------------------------------------------------------------- masked statistics

def _fp32(x: Tensor) -> Tensor:
    """Upcast half precision to fp32 (fp64 stays fp64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is True (values outside the mask, even inf/nan, are ignored)."""
    x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the True entries of ``mask``; 0 where the mask is empty."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mu) * rsqrt(max(var, eps)) with the masked mean and POPULATION variance; 0 off the mask."""
    mu = masked_mean(x, mask)
    var = masked_mean((x - mu) ** 2, mask)
    return torch.where(mask, (x - mu) * var.clamp(min=eps).rsqrt(), torch.zeros_like(x))


# ----------------------------------------------------------------------------- steps A-F

def compute_kl(log_probs: Tensor, ref_log_probs: Tensor, kl_estimator: str = "k1") -> Tensor:
    """Step C: per-token KL estimate from d = log_probs - ref_log_probs, clamped to [-10, 10]."""
    d = _fp32(log_probs) - _fp32(ref_log_probs)
    if kl_estimator == "k1":
        k = d
    elif kl_estimator == "k2":
        k = d.square() / 2
    elif kl_estimator == "k3":
        d = d.clamp(min=-10.0)
        k = torch.exp(-d) - 1 + d
    else:
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; expected one of {KL_ESTIMATORS}")
    return k.clamp(-10.0, 10.0)


def last_positions(action_mask: Tensor) -> Tensor:
    """Index of the last True position of each row, [N] (0 for rows without any True)."""
    if action_mask.size(-1) == 0:
        return torch.zeros(action_mask.shape[:-1], dtype=torch.long, device=action_mask.device)
    t = torch.arange(action_mask.size(-1), device=action_mask.device)
    return torch.where(action_mask, t, torch.zeros_like(t)).amax(dim=-1)


def discounted_returns(rewards: Tensor, gamma: float = 1.0) -> Tensor:
    """Step E: G[:, t] = sum_{s >= t} gamma^(s - t) * rewards[:, s] (a reverse discounted cumsum)."""
    if gamma == 1.0:
        return rewards.flip(-1).cumsum(-1).flip(-1)
    # A time loop (vectorised over samples): exact for any gamma, unlike gamma^-t rescaling tricks.
    returns = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.size(-1) - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns


def _baseline(r: Tensor, estimator: str, group_size: int) -> Tensor:
    """Step A: the shaped scalar reward r~ for each sample, [N]."""
    if estimator == "reinforce":
        return r
    g = r.view(-1, group_size)
    if estimator == "reinforce_baseline":
        out = g - g.mean(-1, keepdim=True)
    elif estimator == "group_norm":
        out = (g - g.mean(-1, keepdim=True)) / (g.std(-1, keepdim=True, unbiased=True) + 1e-9)
    else:  # rloo: r minus the mean of the other samples of the group
        out = g - (g.sum(-1, keepdim=True) - g) / (group_size - 1)
    return out.reshape(-1)


def _check_inputs(rewards: Tensor, log_probs: Tensor | None, ref_log_probs: Tensor | None,
                  action_mask: Tensor, estimator: str, kl_estimator: str, gamma: float,
                  group_size: int, reward_clip: float | None) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; expected one of {KL_ESTIMATORS}")
    if action_mask.dtype != torch.bool or action_mask.dim() != 2:
        raise ValueError(f"action_mask must be a bool [N, T] tensor, got {action_mask.dtype} "
                         f"{tuple(action_mask.shape)} (use mask.bool())")
    n = action_mask.size(0)
    if rewards.shape != (n,):
        raise ValueError(f"rewards must have shape [N] = ({n},), got {tuple(rewards.shape)}")
    for name, x in (("log_probs", log_probs), ("ref_log_probs", ref_log_probs)):
        if x is not None and x.shape != action_mask.shape:
            raise ValueError(f"{name} must have the action_mask's shape {tuple(action_mask.shape)}, "
                             f"got {tuple(x.shape)}")
    if ref_log_probs is not None and log_probs is None:
        raise ValueError("ref_log_probs given without log_probs: the KL term needs both")
    if group_size < 1 or n % group_size:
        raise ValueError(f"group_size={group_size} must be >= 1 and divide the number of "
                         f"samples N={n} (the samples of one prompt are contiguous)")
    if estimator in _GROUP_ESTIMATORS and group_size < 2:
        raise ValueError(f"estimator {estimator!r} needs group_size >= 2 samples per prompt, "
                         f"got {group_size}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if reward_clip is not None and not reward_clip > 0:
        raise ValueError(f"reward_clip must be > 0 or None, got {reward_clip}")


@torch.no_grad()
def compute_advantages(rewards: Tensor, log_probs: Tensor | None, ref_log_probs: Tensor | None,
                       action_mask: Tensor, *, estimator: str = "reinforce",
                       kl_coef: float = 0.01, kl_estimator: str = "k1", gamma: float = 1.0,
                       group_size: int = 1, reward_clip: float | None = 10.0
                       ) -> tuple[Tensor, Tensor]:
    """Steps A-F for a whole rollout batch; returns ``(advantages, returns)``, both [N, T].

    ``returns`` is the un-whitened return-to-go G; ``advantages`` is G whitened over all action
    tokens of the batch (``reinforce``, ``reinforce_baseline``) or G itself (``group_norm``,
    ``rloo``). Both are zero outside ``action_mask``. ``ref_log_probs=None`` drops the KL term.
    Whitening spans exactly the tensors passed in: pass the whole rollout batch at once.
    Runs under no_grad: advantages are loss targets, never differentiated.
    """
    _check_inputs(rewards, log_probs, ref_log_probs, action_mask, estimator, kl_estimator, gamma,
                  group_size, reward_clip)
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    if log_probs is not None:
        dtype = torch.promote_types(dtype, log_probs.dtype)
    r = _baseline(rewards.to(dtype), estimator, group_size)                       # A
    if reward_clip is not None:
        r = r.clamp(-reward_clip, reward_clip)                                    # B
    last = last_positions(action_mask)
    t = torch.arange(action_mask.size(1), device=action_mask.device)
    rho = (t[None, :] == last[:, None]) * r[:, None]                              # r~ at last(i)
    if ref_log_probs is not None:
        rho = rho - kl_coef * compute_kl(log_probs, ref_log_probs, kl_estimator).to(dtype)  # C
    rho = torch.where(action_mask, rho, torch.zeros_like(rho))                    # D
    returns = torch.where(action_mask, discounted_returns(rho, gamma), torch.zeros_like(rho))  # E
    if estimator in _WHITENED_ESTIMATORS:
        return masked_whiten(returns, action_mask), returns                      # F
    return returns.clone(), returns


# ----------------------------------------------------------------------------- step G: the loss

def policy_loss(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, action_mask: Tensor,
                *, eps_clip_low: float = 0.2, eps_clip_high: float = 0.2,
                num_tokens: int | float | Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Step G: clipped surrogate, returns ``(loss, stats)``.

    loss = sum over action tokens of -min(ratio * A, clamp(ratio, 1 - eps_low, 1 + eps_high) * A)
    divided by ``num_tokens`` (the action tokens of the whole optimizer step, all micro-batches
    and ranks) or, when None, by this batch's action tokens. ``stats`` holds detached tensors with
    the same denominator, so summing them over micro-batches gives the step's token means:
    ``clip_frac`` (tokens where the clipped term is the active one) and ``approx_kl``
    (k3 estimate of KL(old || new), (ratio - 1) - log ratio). With DeepSpeed, which divides each
    micro-batch loss by the accumulation steps and averages gradients over ranks, pass
    ``num_tokens = step_tokens / (accumulation_steps * world_size)``.
    """
    if not (log_probs.shape == old_log_probs.shape == advantages.shape == action_mask.shape):
        raise ValueError("log_probs, old_log_probs, advantages and action_mask must share a shape, "
                         f"got {tuple(log_probs.shape)}, {tuple(old_log_probs.shape)}, "
                         f"{tuple(advantages.shape)}, {tuple(action_mask.shape)}")
    if action_mask.dtype != torch.bool:
        raise ValueError(f"action_mask must be bool, got {action_mask.dtype} (use mask.bool())")
    log_ratio = (log_probs - old_log_probs).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - eps_clip_low, 1 + eps_clip_high) * advantages
    loss_tok = -torch.min(surr1, surr2)
    if num_tokens is None:
        denom = action_mask.sum().clamp(min=1).to(loss_tok.dtype)
    else:
        denom = torch.as_tensor(num_tokens, dtype=loss_tok.dtype, device=loss_tok.device)
    loss = masked_sum(loss_tok, action_mask) / denom
    with torch.no_grad():
        stats = {
            "clip_frac": masked_sum((surr2 < surr1).to(loss_tok.dtype), action_mask) / denom,
            "approx_kl": masked_sum((ratio - 1) - log_ratio, action_mask) / denom,
        }
    return loss, stats


# ----------------------------------------------------------------------------- log-probs, entropy

def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of softmax(logits) over the last dimension, computed in fp32: [..., V] -> [...]."""
    log_p = F.log_softmax(_fp32(logits), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def log_probs_from_logits(logits: Tensor, labels: Tensor, temperature: float = 1.0,
                          chunk_size: int = 1024) -> Tensor:
    """log softmax(logits / temperature) gathered at ``labels``: [..., V], [...] -> [...] in fp32.

    Rows are processed ``chunk_size`` at a time so the fp32 copy never covers all rows at once.
    """
    flat, idx = logits.reshape(-1, logits.size(-1)), labels.reshape(-1, 1)
    out = [_gather_log_probs(flat[i:i + chunk_size], idx[i:i + chunk_size], temperature)
           for i in range(0, flat.size(0), chunk_size)]
    return torch.cat(out).reshape(labels.shape) if out else _fp32(flat.new_zeros(labels.shape))


def _gather_log_probs(logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    logits = _fp32(logits) / temperature
    return (logits.gather(-1, labels) - logits.logsumexp(-1, keepdim=True)).squeeze(-1)


def _chunk_log_probs(h: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor,
                     temperature: float, with_entropy: bool) -> tuple[Tensor, Tensor]:
    logits = _fp32(F.linear(h, weight, bias)) / temperature
    log_z = logits.logsumexp(-1, keepdim=True)
    lp = (logits.gather(-1, labels[:, None]) - log_z).squeeze(-1)
    if not with_entropy:
        return lp, lp.new_zeros(())
    log_p = logits - log_z
    return lp, -(log_p.exp() * log_p).sum(-1)


def chunked_log_probs(hidden_states: Tensor, lm_head_weight: Tensor, labels: Tensor,
                      temperature: float = 1.0, chunk_size: int = 1024, *,
                      lm_head_bias: Tensor | None = None, return_entropy: bool = False,
                      use_checkpoint: bool = True) -> Tensor | tuple[Tensor, Tensor]:
    """Per-token log-probs (and entropy) at ``temperature`` without materialising [tokens, V].

    hidden_states [..., H], lm_head_weight [V, H], labels [...] -> fp32 [...]. The projection
    runs in the inputs' dtype and is upcast to fp32 per chunk of ``chunk_size`` tokens. With
    ``use_checkpoint`` and grad enabled, each chunk's logits are recomputed in the backward
    instead of being kept, so peak memory is one chunk of logits.
    """
    if hidden_states.shape[:-1] != labels.shape:
        raise ValueError(f"labels {tuple(labels.shape)} must match hidden_states' leading dims "
                         f"{tuple(hidden_states.shape[:-1])}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    h, y = hidden_states.reshape(-1, hidden_states.size(-1)), labels.reshape(-1)
    grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (hidden_states, lm_head_weight, lm_head_bias))
    lps, ents = [], []
    for i in range(0, h.size(0), chunk_size):
        args = (h[i:i + chunk_size], lm_head_weight, lm_head_bias, y[i:i + chunk_size],
                temperature, return_entropy)
        if use_checkpoint and grad:
            lp, ent = checkpoint(_chunk_log_probs, *args, use_reentrant=False)
        else:
            lp, ent = _chunk_log_probs(*args)
        lps.append(lp)
        ents.append(ent)
    out_dtype = torch.promote_types(hidden_states.dtype, torch.float32)
    lp = torch.cat(lps).reshape(labels.shape) if lps else h.new_zeros(labels.shape, dtype=out_dtype)
    if not return_entropy:
        return lp
    ent = torch.cat(ents).reshape(labels.shape) if ents else torch.zeros_like(lp)
    return lp, ent
