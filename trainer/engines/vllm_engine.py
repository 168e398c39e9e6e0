"""The vLLM rollout engine: one ``vllm.LLM`` per instance, written against vLLM 0.26.0.

Every line that knows about vLLM lives in this module, so a vLLM upgrade touches only this file.
vLLM is imported lazily: the module imports (and its worker extension resolves) without it.

vLLM 0.26.0 APIs relied on (paths inside the 0.26.0 wheel, read from its source):
- ``vllm.LLM(model, *, tensor_parallel_size, dtype, seed, gpu_memory_utilization, enforce_eager,
  **EngineArgs)`` (entrypoints/llm.py); EngineArgs fields passed through it (engine/arg_utils.py):
  ``enable_prefix_caching``, ``max_model_len``, ``load_format``, ``logprobs_mode``,
  ``generation_config``, ``worker_extension_cls``.
- ``LLM.generate(prompts, sampling_params, use_tqdm=False)``: a list of ``vllm.TokensPrompt``
  (inputs/llm.py, ``prompt_token_ids``) and one ``vllm.SamplingParams`` per prompt; outputs come
  back sorted by request id, i.e. in input order (entrypoints/offline_utils.py ``_run_engine``).
- ``SamplingParams(n, temperature, top_p, max_tokens, seed, logprobs=0, stop_token_ids,
  detokenize=False, flat_logprobs=True)`` (sampling_params.py). With ``n > 1`` and a seed, child
  ``i`` samples with ``seed + i`` (v1/engine/parallel_sampling.py), so prompt ``p`` gets base seed
  ``seed + p * n`` here and no two samples share one. ``max_tokens`` must be >= 1.
- ``CompletionOutput.index / token_ids / logprobs / finish_reason`` (outputs.py); ``logprobs`` is a
  ``FlatLogprobs`` or a list of ``{token_id: Logprob}`` (logprobs.py).
- ``logprobs_mode="processed_logprobs"`` (config/model.py ``LogprobsMode``): log-probs after
  temperature, top-k/top-p (v1/sample/ops/topk_topp_sampler.py ``forward_native``; the V2 runner in
  v1/worker/gpu/sample/sampler.py likewise). With top_p = 1 that is log_softmax(logits / T) in fp32,
  what the trainer recomputes; with top_p < 1 vLLM renormalises over the nucleus, unlike
  TransformersEngine (pre-truncation). Greedy (T = 0) requests get log-probs at T = 1
  (v1/sample/sampler.py ``sample``; gumbel.py's temperature kernel skips T = 0). This mode disables
  the FlashInfer top-p sampler (same file), a cost we accept to get comparable log-probs.
- ``generation_config="vllm"``: no sampling defaults from the checkpoint's generation_config.json;
  its eos ids still stop generation (config/model.py ``get_diff_sampling_param``).
- ``LLM.collective_rpc(method, timeout, args, kwargs)`` runs a method on every worker
  (entrypoints/llm.py); ``worker_extension_cls`` mixes a class into the worker, refusing any name
  the worker already has (v1/worker/worker_base.py), hence the ``acecoder_`` prefixes: 0.26.0's
  worker already owns ``update_weights``, ``start_weight_update``, ... (v1/worker/gpu_worker.py).
- Worker side: ``self.get_model().load_weights(weights=...)`` takes Hugging Face names, shards for
  TP, and copies in place (so captured CUDA graphs stay valid); ``self.device``,
  ``self.parallel_config`` (v1/worker/gpu_worker.py, worker_base.py).
- NCCL: ``vllm.distributed.weight_transfer.nccl_common.stateless_init_process_group`` and
  ``worker_init_process_group`` (StatelessProcessGroup + PyNcclCommunicator; worker rank =
  rank_offset + dp_index * world_size + rank); ``PyNcclCommunicator.broadcast(tensor, src, stream)``
  (distributed/device_communicators/pynccl.py).
- RPC arguments: with ``VLLM_ENABLE_V1_MULTIPROCESSING=1`` (the default, envs.py) the engine core
  runs in another process and utility-call arguments travel as msgpack without type information
  (v1/serial_utils.py): a tensor argument would arrive as a list. So CPU buckets travel as
  ``bytes`` plus plain-tuple metadata, which works in both modes.
- ``LLM.reset_prefix_cache() -> bool``, ``LLM.sleep(level)``, ``LLM.wake_up(tags)`` (sleep needs
  ``enable_sleep_mode=True`` at construction).

Not verified here (no GPU, vLLM not installable on this machine): that all of the above runs;
that engine log-probs match the trainer's to the tolerance in tests/trainer/test_vllm_engine.py;
NCCL group set-up between a policy process and engine workers (needs two GPUs); TP > 1.
vLLM 0.26.0 also ships its own weight-transfer API (``LLM.init_weight_transfer_engine`` /
``update_weights`` with ``weight_transfer_config``); we keep our bucket format so the policy side
(weight_sync.py) needs neither vLLM nor its packing protocol.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch

from trainer.engines.base import Completion, RolloutEngine, SamplingParams, check_sampling_params
from trainer.engines.weight_sync import BucketMeta, pack_bucket, unpack_bucket

VLLM_VERSION = "0.26"
EXTENSION = f"{__name__}.WeightSyncWorkerExtension"


class VLLMEngine(RolloutEngine):
    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 dtype: str = "bfloat16", seed: int = 0, enable_prefix_caching: bool = True,
                 max_model_len: int | None = None, enforce_eager: bool = False, load_format: str = "auto",
                 weight_sync_timeout_s: float | None = 600.0, **llm_kwargs: Any):
        import vllm

        if not vllm.__version__.startswith(VLLM_VERSION):
            warnings.warn(f"VLLMEngine is written against vLLM {VLLM_VERSION}.x, found {vllm.__version__}; "
                          "check trainer/engines/vllm_engine.py's API list", stacklevel=2)
        self._vllm = vllm
        self.weight_sync_timeout_s = weight_sync_timeout_s
        kwargs: dict[str, Any] = dict(
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype, seed=seed, enable_prefix_caching=enable_prefix_caching, max_model_len=max_model_len,
            enforce_eager=enforce_eager, load_format=load_format,
            logprobs_mode="processed_logprobs", generation_config="vllm", worker_extension_cls=EXTENSION)
        kwargs.update(llm_kwargs)
        self.llm = vllm.LLM(model_path, **kwargs)

    # ------------------------------------------------------------------------- generation

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Completion]:
        check_sampling_params(prompts, params)
        prompt_ids = [tuple(int(t) for t in p) for p in prompts]
        if params.max_new_tokens == 0:
            return [Completion(i, s, p, (), (), "length")
                    for i, p in enumerate(prompt_ids) for s in range(params.n)]
        sampling = [self._vllm.SamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            seed=None if params.seed is None else params.seed + i * params.n, logprobs=0,
            stop_token_ids=list(params.stop_token_ids) or None, detokenize=False, flat_logprobs=True)
            for i in range(len(prompt_ids))]
        requests = [self._vllm.TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        if len(outputs) != len(prompt_ids):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompt_ids)} prompts")
        completions = []
        for i, (prompt, out) in enumerate(zip(prompt_ids, outputs)):
            samples = sorted(out.outputs, key=lambda o: o.index)
            if len(samples) != params.n:
                raise RuntimeError(f"vLLM returned {len(samples)} samples for prompt {i}, expected {params.n}")
            for s, o in enumerate(samples):
                if o.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"prompt {i} sample {s} ended with finish_reason={o.finish_reason!r}")
                ids = tuple(int(t) for t in o.token_ids)
                completions.append(Completion(i, s, prompt, ids, sampled_logprobs(ids, o.logprobs),
                                              o.finish_reason))
        return completions

    # ------------------------------------------------------------------------- weights

    def load_weights(self, named_tensors: Sequence[tuple[str, torch.Tensor]]) -> None:
        """One bucket of (HF name, tensor) from any device; sent to every worker as bytes."""
        flat, meta = pack_bucket(named_tensors, device="cpu")
        self.llm.collective_rpc("acecoder_load_bytes", timeout=self.weight_sync_timeout_s,
                                args=(flat.numpy().tobytes(), meta.to_wire()))

    def init_weight_sync_group(self, master_address: str, master_port: int, rank_offset: int,
                               world_size: int, group_name: str = "weight_sync") -> None:
        """Join the NCCL group whose rank 0 is the policy (``init_policy_weight_sync_group``).

        Blocks until every member has joined: call it asynchronously on every engine (e.g. Ray
        ``.remote``) and meanwhile create rank 0 on the policy. Layout: world_size = 1 +
        engines x tensor_parallel_size, engine k's rank_offset = 1 + k x tensor_parallel_size.
        """
        self.llm.collective_rpc("acecoder_init_weight_sync_group", timeout=self.weight_sync_timeout_s,
                                args=(master_address, master_port, rank_offset, world_size, group_name))

    def receive_bucket(self, metadata: BucketMeta, group_name: str = "weight_sync") -> None:
        """Receive one bucket that the policy broadcasts right after calling this (blocks until loaded)."""
        self.llm.collective_rpc("acecoder_receive_bucket", timeout=self.weight_sync_timeout_s,
                                args=(metadata.to_wire(), group_name))

    def finish_weight_update(self) -> None:
        """Drop prefix-cache blocks computed with the old weights."""
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache (requests still running?); "
                               "cached prefixes would keep old-weight KV entries")

    # ------------------------------------------------------------------------- memory

    def sleep(self, level: int = 1) -> None:
        """Level 1 offloads weights to CPU; level 2 discards them (reload every weight after wake_up).
        Needs ``enable_sleep_mode=True`` at construction."""
        self.llm.sleep(level=level)

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.llm.wake_up(tags=tags)

    def close(self) -> None:
        """Shut the engine core (and its worker processes) down now rather than at garbage collection."""
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm


def init_policy_weight_sync_group(master_address: str, master_port: int, world_size: int,
                                  device: int | torch.device | None = None):
    """Rank 0 of the weight-sync group, on the policy's rank-0 process. Returns vLLM's
    PyNcclCommunicator, which ``weight_sync.broadcast_buckets`` takes as its group."""
    from vllm.distributed.weight_transfer.nccl_common import stateless_init_process_group

    device = torch.cuda.current_device() if device is None else device
    return stateless_init_process_group(master_address, master_port, 0, world_size, device)


def sampled_logprobs(token_ids: tuple[int, ...], logprobs) -> tuple[float, ...]:
    """The sampled token's log-prob at each position from vLLM's FlatLogprobs or list of dicts."""
    if logprobs is None or len(logprobs) != len(token_ids):
        raise RuntimeError(f"vLLM returned {0 if logprobs is None else len(logprobs)} log-probs for "
                           f"{len(token_ids)} tokens; was SamplingParams.logprobs set?")
    if hasattr(logprobs, "start_indices"):  # FlatLogprobs: scan each position's entries
        out = []
        for pos, tok in enumerate(token_ids):
            span = range(logprobs.start_indices[pos], logprobs.end_indices[pos])
            match = [logprobs.logprobs[j] for j in span if logprobs.token_ids[j] == tok]
            if not match:
                raise RuntimeError(f"no log-prob for sampled token {tok} at position {pos}")
            out.append(float(match[0]))
        return tuple(out)
    return tuple(float(position[tok].logprob) for position, tok in zip(logprobs, token_ids))


class WeightSyncWorkerExtension:
    """Mixed into every vLLM worker (``worker_extension_cls``); reached through ``collective_rpc``.

    Runs inside vLLM's worker processes, where ``self`` is the GPU worker.
    """

    def acecoder_init_weight_sync_group(self, master_address: str, master_port: int, rank_offset: int,
                                        world_size: int, group_name: str) -> None:
        from vllm.distributed.weight_transfer.nccl_common import (NCCLWeightTransferInitInfo,
                                                                  worker_init_process_group)

        info = NCCLWeightTransferInitInfo(master_address=master_address, master_port=master_port,
                                          rank_offset=rank_offset, world_size=world_size)
        groups = self.__dict__.setdefault("_acecoder_sync_groups", {})
        groups[group_name] = worker_init_process_group(info, self.parallel_config)

    def acecoder_receive_bucket(self, wire_meta, group_name: str) -> None:
        groups = self.__dict__.get("_acecoder_sync_groups", {})
        if group_name not in groups:
            raise RuntimeError(f"weight-sync group {group_name!r} was never initialised on this worker; "
                               "call init_weight_sync_group first")
        meta = BucketMeta.from_wire(wire_meta)
        flat = torch.empty(meta.nbytes, dtype=torch.uint8, device=self.device)
        groups[group_name].broadcast(flat, src=0, stream=torch.cuda.current_stream())
        self.acecoder_load_named(unpack_bucket(flat, meta))

    def acecoder_load_bytes(self, data: bytes, wire_meta) -> None:
        meta = BucketMeta.from_wire(wire_meta)
        with warnings.catch_warnings():  # read-only bytes; we only read them
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(data, dtype=torch.uint8) if meta.nbytes else torch.empty(0, dtype=torch.uint8)
        self.acecoder_load_named(unpack_bucket(flat.to(self.device), meta))

    def acecoder_load_named(self, named: list[tuple[str, torch.Tensor]]) -> None:
        self.get_model().load_weights(weights=named)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
