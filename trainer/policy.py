"""The policy and reference workers: one DeepSpeed engine each, one process per data-parallel rank.

Plain classes; trainer/actors.py wraps them with Ray. The policy computes log-probs at the sampling
temperature and trains with the clipped surrogate of trainer/algorithms.py; the reference only
computes log-probs. Both run on CPU (gloo, fp32) or CUDA (NCCL, bf16), ZeRO stage 0-3.
"""
from __future__ import annotations

import functools
import math
import os
import random
from contextlib import nullcontext
from typing import Iterator, Sequence

import numpy as np
import torch

from . import checkpoint
from .algorithms import chunked_log_probs, policy_loss
from .config import RLConfig
from .experience import Experience, position_ids
from common.lr_schedule import warmup_cosine_factor
from common.net import init_distributed
from .threads import size_threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TokenLogProbs(torch.nn.Module):
    """The causal LM as DeepSpeed runs it: returns log p(token) of the last ``num_actions`` tokens at
    a temperature, through ``trainer.algorithms.chunked_log_probs``: logits are never materialised for
    more than ``chunk_size`` tokens at once (full vocabulary fp32 logits of a long RL batch would not
    fit), and with ``checkpoint_chunks`` each chunk's logits are recomputed in the backward pass
    instead of being kept.

    With ``packed``, the rows' real tokens are concatenated into one row with positions restarting at
    each sequence and no attention mask: transformers then keeps the sequences apart (varlen kernels
    under flash_attention_2, block-diagonal masks under sdpa/eager), and no compute goes to padding."""

    def __init__(self, lm: torch.nn.Module, packed: bool = False):
        super().__init__()
        self.lm = lm
        self.packed = packed

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_actions: int) -> torch.Tensor:
        """Hidden states at the positions that predict the last ``num_actions`` tokens, [n, T, H]."""
        backbone = getattr(self.lm, self.lm.base_model_prefix)
        positions = position_ids(attention_mask)
        if not self.packed:
            return backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                            use_cache=False).last_hidden_state[:, -num_actions - 1:-1]
        keep = attention_mask.bool()
        flat = backbone(input_ids=input_ids[keep][None], attention_mask=None, use_cache=False,
                        position_ids=positions[keep][None]).last_hidden_state[0]
        # (use_cache=False matters: with a cache, transformers does not look for packed positions.)
        # Where each padded position's token sits in the packed row; padding maps to a neighbour,
        # which only ever lands under a zero action mask.
        index = (keep.flatten().long().cumsum(0) - 1).clamp(min=0).view_as(keep)
        return flat[index[:, -num_actions - 1:-1]]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_actions: int, temperature: float,
                chunk_size: int, checkpoint_chunks: bool = False, want_entropy: bool = False):
        hidden = self._hidden(input_ids, attention_mask, num_actions)
        head = self.lm.get_output_embeddings()
        out = chunked_log_probs(hidden, head.weight, input_ids[:, -num_actions:], temperature, chunk_size,
                                lm_head_bias=head.bias, return_entropy=want_entropy, use_checkpoint=checkpoint_chunks)
        if not want_entropy:
            return out, None
        lp, ent = out
        return lp, ent.detach()  # a statistic: no gradient flows through it


class PolicyWorker:
    """One rank of the policy (``train=True``) or of the frozen reference (``train=False``)."""

    def __init__(self, cfg: RLConfig, model_path: str, *, train: bool, rank: int = 0, world_size: int = 1,
                 master_addr: str = "127.0.0.1", master_port: int = 29500, total_steps: int = 1,
                 num_threads: int | None = None):
        import deepspeed
        from transformers import AutoModelForCausalLM

        self.cfg, self.train_mode, self.rank, self.world_size = cfg, train, rank, world_size
        self.device = "cuda" if torch.cuda.is_available() and cfg.train.actor_num_gpus_per_node > 0 else "cpu"
        if num_threads:
            size_threads(num_threads)
        init_distributed(self.device, rank, world_size, master_addr, master_port)
        seed_everything(cfg.train.seed + rank)
        bf16 = cfg.model.bf16 and self.device == "cuda"
        t = cfg.train
        zero = t.zero_stage if train else (3 if t.zero_stage == 3 else 0)
        gas = max(1, t.train_batch_size // (t.micro_train_batch_size * world_size))
        ds_config = {
            "train_micro_batch_size_per_gpu": t.micro_train_batch_size,
            "gradient_accumulation_steps": gas,
            "gradient_clipping": t.max_norm,
            "zero_optimization": {"stage": zero, "stage3_param_persistence_threshold": 0,
                                  **({"offload_optimizer": {"device": "cpu", "pin_memory": True}}
                                     if (train and t.adam_offload) else {})},
            "bf16": {"enabled": bf16},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        if zero == 3:  # load each rank's partition directly rather than the whole model per rank
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds_config = HfDeepSpeedConfig(ds_config)  # from_pretrained looks it up while alive
        model = AutoModelForCausalLM.from_pretrained(
            model_path, torch_dtype=torch.bfloat16 if bf16 else torch.float32,
            attn_implementation=cfg.model.attn_implementation, trust_remote_code=cfg.model.trust_remote_code)
        model.config.use_cache = False
        if train and cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        optimizer = scheduler = None
        if train:
            params = [p for p in model.parameters() if p.requires_grad]
            if self.device == "cuda" and not t.adam_offload:
                from deepspeed.ops.adam import FusedAdam

                optimizer = FusedAdam(params, lr=t.actor_learning_rate, betas=tuple(t.adam_betas), weight_decay=t.l2)
            else:
                optimizer = torch.optim.AdamW(params, lr=t.actor_learning_rate, betas=tuple(t.adam_betas),
                                              weight_decay=t.l2)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
                warmup_cosine_factor, max_steps=total_steps, lr_warmup_ratio=t.lr_warmup_ratio,
                min_lr_ratio=t.min_lr_ratio))
        else:
            model.requires_grad_(False)
        module = TokenLogProbs(model, packed=t.packing_samples)
        if zero == 3:
            # chunked_log_probs reads the LM head's weights outside the head's forward: registered with
            # the module whose forward reads them, ZeRO-3 gathers them for its forward and backward
            # (DeepSpeed would register them on the first such read too; explicit, it is not left to that)
            head = model.get_output_embeddings()
            for p in (head.weight, head.bias):
                if p is not None:
                    deepspeed.zero.register_external_parameter(module, p)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
        self.lm = self.engine.module.lm  # the Hugging Face model: names, saving, weight sync
        if not train:
            self.engine.eval()
        self.zero3 = zero == 3
        self.gas = gas

    # ---------------------------------------------------------------- log-probs
    def _log_probs(self, exp: Experience, temperature: float, with_grad: bool,
                   want_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log p(response token) at the sampling temperature, [n, T]. Goes through the DeepSpeed
        engine's forward (ZeRO-3 counts its micro-steps there: bypassing it loses accumulated grads)."""
        seq = exp.sequences.to(self.device)
        att = exp.attention_mask.to(self.device)
        # CPU autocast: matmuls in bf16 (2 cores: 9.5 s -> 6.0 s for a SmolLM2 forward+backward of 4 x 300
        # tokens); chunked_log_probs upcasts each chunk's logits to fp32 before the softmax.
        autocast = self.device == "cpu" and self.cfg.model.cpu_bf16_autocast
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return self.engine(seq, att, exp.num_actions, temperature if temperature > 0 else 1.0,
                               self.cfg.train.logprob_chunk_size, checkpoint_chunks=with_grad,
                               want_entropy=want_entropy)

    @torch.no_grad()
    def compute_log_probs(self, exp: Experience, temperature: float) -> torch.Tensor:
        out = []
        mb = self.cfg.train.micro_train_batch_size * 2
        for s in range(0, len(exp), mb):
            part = exp.select(range(s, min(s + mb, len(exp))), trim=False)
            lp, _ = self._log_probs(part, temperature, with_grad=False)
            out.append(lp.float().cpu())
        return torch.cat(out, 0) * exp.action_mask

    # ---------------------------------------------------------------- training
    def train_steps(self, steps: Sequence[Experience], tokens_per_step: Sequence[float],
                    temperature: float) -> dict:
        """One optimizer step per entry of ``steps`` (this rank's share); ``tokens_per_step`` are the
        global action-token counts, so the loss is a token mean over the whole optimizer step.

        The returned statistics are this rank's contributions: summed over ranks they are the
        token means of the step (averaged over the steps); grad_norm and lr are global already."""
        t = self.cfg.train
        low = t.eps_clip_low or t.eps_clip
        high = t.eps_clip_high or t.eps_clip
        self.engine.train()
        acc = {"policy_loss": 0.0, "clip_frac": 0.0, "approx_kl": 0.0, "entropy": 0.0, "engine_logprob_gap": 0.0}
        grad_norm = 0.0
        share = self.gas * self.world_size  # micro-batch statistics are scaled by 1/num_tokens*share
        for exp, n_tokens in zip(steps, tokens_per_step):
            per_micro = max(1, math.ceil(len(exp) / self.gas))
            scale = n_tokens / share
            for s in range(0, self.gas * per_micro, per_micro):
                if s < len(exp):
                    mb = exp.select(range(s, min(s + per_micro, len(exp))))
                    mask = mb.action_mask
                else:  # this rank ran out of samples: a zero-weight micro-batch keeps ranks in step
                    mb = exp.select([0])
                    mask = torch.zeros_like(mb.action_mask)
                lp, ent = self._log_probs(mb, temperature, with_grad=True, want_entropy=True)
                mask_d = mask.to(self.device)
                if mb.old_log_probs is None:
                    # One on-policy update (the controller's choice): the weights have not moved since
                    # sampling, so the old log-probs are this forward's own, detached (ratio exactly 1)
                    # and the separate log-prob pass is saved. The stale-weights check reads them here.
                    old = lp.detach()
                    gap = ((mb.engine_log_probs.to(self.device) - old).abs() * mask_d).sum()
                    acc["engine_logprob_gap"] += float(gap) / max(1.0, n_tokens)
                else:
                    old = mb.old_log_probs.to(self.device)
                loss, stats = policy_loss(lp, old, mb.advantages.to(self.device),
                                          mask_d, eps_clip_low=low, eps_clip_high=high, num_tokens=scale)
                self.engine.backward(loss)
                self.engine.step()
                acc["policy_loss"] += float(loss.detach()) / share
                acc["clip_frac"] += float(stats["clip_frac"]) / share
                acc["approx_kl"] += float(stats["approx_kl"]) / share
                acc["entropy"] += float((ent * mask_d).sum()) / max(1.0, n_tokens)
            norm = self.engine.get_global_grad_norm()
            grad_norm += float(norm if norm is not None else 0.0)
        out = {k: v / len(steps) for k, v in acc.items()}
        out["grad_norm"] = grad_norm / len(steps)
        out["lr"] = self.scheduler.get_last_lr()[0] if self.scheduler is not None else 0.0
        return out

    # ---------------------------------------------------------------- weights out
    def weight_buckets(self, bucket_bytes: int, to_cpu: bool = True) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Full (gathered) parameters in buckets of about ``bucket_bytes``, Hugging Face names. Every
        rank must iterate (ZeRO-3 gathers collectively); only rank 0's tensors are meaningful."""
        import deepspeed

        model = self.lm
        bucket: list[tuple[str, torch.nn.Parameter]] = []
        size = 0

        def emit(items):
            params = [p for _, p in items]
            ctx = deepspeed.zero.GatheredParameters(params) if self.zero3 else nullcontext()
            with ctx:
                out = [(n, (p.data.detach().to("cpu", copy=True) if to_cpu else p.data.detach().clone()))
                       for n, p in items]
            return out

        for name, p in model.named_parameters():
            numel = p.ds_numel if hasattr(p, "ds_numel") else p.numel()
            nbytes = numel * p.element_size()
            if bucket and size + nbytes > bucket_bytes:
                yield emit(bucket)
                bucket, size = [], 0
            bucket.append((name, p))
            size += nbytes
        if bucket:
            yield emit(bucket)

    def weight_buckets_list(self, bucket_bytes: int) -> list | None:
        """All buckets as CPU tensors on rank 0 (None elsewhere): the object-store sync path."""
        buckets = list(self.weight_buckets(bucket_bytes, to_cpu=True))
        return buckets if self.rank == 0 else None

    # NCCL path (GPU): rank 0 broadcasts buckets straight into the vLLM engines' workers.
    def sync_endpoint(self) -> tuple[str, int]:
        import ray

        from common.net import free_port

        return ray.util.get_node_ip_address(), free_port()

    def init_weight_sync(self, master_address: str, master_port: int, world_size: int) -> None:
        if self.rank == 0:
            from .engines.vllm_engine import init_policy_weight_sync_group

            self._sync_group = init_policy_weight_sync_group(master_address, master_port, world_size)

    def broadcast_weights(self, engines: list, bucket_mb: int) -> int:
        """Every rank iterates (ZeRO-3 gathers one parameter at a time); rank 0 packs and broadcasts,
        each bucket announced to the engines first so that they post the matching receive."""
        import deepspeed
        import ray

        from .engines.weight_sync import broadcast_buckets

        def named():
            for name, p in self.lm.named_parameters():
                with (deepspeed.zero.GatheredParameters([p]) if self.zero3 else nullcontext()):
                    if self.rank == 0:
                        yield name, p.data  # copied into the bucket before the gather is released

        if self.rank != 0:
            for _ in named():
                pass
            return 0
        return broadcast_buckets(named(), self._sync_group, bucket_mb=bucket_mb, device=self.device,
                                 announce=lambda meta: [e.receive_bucket.remote(meta) for e in engines],
                                 wait=ray.get)

    def state_dict_cpu(self) -> dict[str, torch.Tensor]:
        sd: dict[str, torch.Tensor] = {}
        for bucket in self.weight_buckets(256 << 20):
            sd.update(bucket)
        return sd

    def save_hf(self, path: str, tokenizer_path: str | None = None) -> None:
        """A save_pretrained export of the current weights (rank 0 writes)."""
        sd = self.state_dict_cpu()
        if self.rank != 0:
            return
        model = self.lm
        os.makedirs(path, exist_ok=True)
        model.save_pretrained(path, state_dict=sd, safe_serialization=True)
        if tokenizer_path:
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(path)

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str, tag: str) -> None:
        self.engine.save_checkpoint(path, tag=tag, save_latest=False)

    def load_checkpoint(self, path: str, tag: str) -> None:
        self.engine.load_checkpoint(path, tag=tag, load_optimizer_states=self.train_mode,
                                    load_lr_scheduler_states=self.train_mode)

    def rng_state(self) -> dict:
        return checkpoint.rng_state()

    def set_rng_state(self, state: dict) -> None:
        checkpoint.set_rng_state(state)

    def ping(self) -> bool:
        return True
