"""One typed configuration for an RL run: sections of dataclasses, loadable from YAML, overridable on
the command line with OpenRLHF's option names where the concept is the same: its underscored names
(up to 0.10.1: ``--pretrain``, ``--rollout_batch_size``, ``--init_kl_coef``, ...) and its dotted groups
(0.10.2 and 0.11: ``--actor.model_name_or_path``, ``--rollout.batch_size``, ``--algo.kl.init_coef``, ...;
``ALIASES``).

    cfg = load_config(["--config", "launch/configs/rl_qwen_base.yaml", "--actor_learning_rate", "1e-6"])

Every field has a default and a one-line help (``python -m trainer --help`` lists them all, with
every name of each). The options are generated from the dataclasses below by ``common.options``, as
the other commands' shared options are (the sandbox section is ``--sandbox_<field>`` everywhere).
Option names are unique across sections, so ``--name`` and ``--section.name`` both work. 0 means no
limit / never (OpenRLHF's -1 still works for ``--save_steps`` and ``--eval_steps``, with a warning).
Invalid values are refused before any actor starts, with the option named.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from common.options import ConfigError, HelpFormatter, add_dataclass_options, coerce, legacy_value, opt
from sandbox import options as sandbox_options
from sandbox.types import SandboxConfig

NEVER = {-1: 0}  # OpenRLHF's (and train_rm's old) -1 for "never" is our 0


@dataclass
class ModelConfig:
    pretrain: str = opt("", "policy model: local directory or hub id")
    ref_pretrain: str = opt("", "reference model for the KL term (default: same as --pretrain)")
    reward_pretrain: str = opt("", "Bradley-Terry reward model, when a reward uses it")
    bf16: bool = opt(True, "bfloat16 weights and compute on GPU (CPU runs fp32 weights)")
    cpu_bf16_autocast: bool = opt(False, "CPU policy/reference: bfloat16 autocast for the forward and backward "
                                         "(weights, optimizer, engines stay fp32; ~1.6x on avx512_bf16 CPUs)")
    gradient_checkpointing: bool = opt(True, "recompute activations in the backward pass")
    attn_implementation: str = opt("sdpa", "attention kernel: sdpa, eager or flash_attention_2")
    trust_remote_code: bool = opt(False, "allow model code from the checkpoint directory")


@dataclass
class DataConfig:
    prompt_data: str = opt("", "AceCode-schema records (JSONL or Parquet): question + test_cases")
    input_key: str = opt("context_messages", "chat messages field; falls back to 'question'")
    apply_chat_template: bool = opt(True, "format prompts with the tokenizer's chat template")
    prompt_max_len: int = opt(1024, "prompts longer than this (tokens) are dropped, with a count")
    max_samples: int = opt(0, "use at most this many prompts (0: all)")
    eval_data: str = opt("", "held-out records for the pass-rate evaluation (optional)")
    eval_samples: int = opt(0, "evaluate on at most this many held-out prompts (0: all)")


@dataclass
class RolloutConfig:
    rollout_batch_size: int = opt(256, "prompts per RL step")
    n_samples_per_prompt: int = opt(8, "samples per prompt")
    temperature: float = opt(1.0, "sampling temperature (log-probs are computed at it too)")
    top_p: float = opt(1.0, "nucleus sampling")
    generate_max_len: int = opt(2048, "max new tokens per sample")
    engine: Literal["vllm", "hf"] = opt("vllm", "rollout engine: vllm (GPU) or hf (transformers, CPU or GPU)")
    vllm_num_engines: int = opt(1, "rollout engine actors")
    vllm_tensor_parallel_size: int = opt(1, "GPUs per vLLM engine")
    vllm_gpu_memory_utilization: float = opt(0.85, "fraction of GPU memory vLLM may take")
    enable_prefix_caching: bool = opt(True, "vLLM prefix caching (reset after every weight sync)")
    enforce_eager: bool = opt(False, "vLLM without torch.compile / CUDA graphs (faster start; on CPU the "
                                     "compiled model is rarely worth its start-up time for short runs)")
    vllm_sync_backend: Literal["nccl", "objstore"] = opt("nccl", "weight sync: NCCL broadcast or the Ray object store")
    weight_sync_bucket_mb: int = opt(256, "weights move to the engines in buckets of this size")
    max_logprob_diff: float = opt(0.5, "stale-weights detector: fail when mean |engine - policy| log-prob "
                                       "difference after a sync exceeds this (0: never fail)")
    rollout_chunk_size: int = opt(0, "prompts per generation call, so rewards start before the whole "
                                     "rollout is done (0: rollout_batch_size / engines)")
    dynamic_filtering: bool = opt(False, "drop prompt groups whose rewards have zero variance (no signal "
                                         "under a group baseline) and generate for more prompts instead")
    dynamic_filtering_reward_range: list[float] = opt([], "LOW HIGH: also drop groups whose mean reward is "
                                                          "not strictly inside (LOW, HIGH) (empty: no range test)")
    dynamic_filtering_max_rounds: int = opt(4, "generation rounds per step at most with dynamic filtering; "
                                                "then train on what there is, zero-variance groups included")
    vllm_enable_sleep: bool = opt(False, "engines sleep (weights offloaded) while the policy trains and "
                                         "wake for rollouts and weight syncs (needs --colocate_all_models)")


@dataclass
class TrainConfig:
    train_batch_size: int = opt(128, "samples per optimizer step (global)")
    micro_train_batch_size: int = opt(4, "samples per forward/backward pass per rank")
    max_epochs: int = opt(1, "passes over each rollout batch")
    num_episodes: int = opt(1, "passes over the prompt data")
    max_steps: int = opt(0, "stop after this many RL steps (0: no limit)")
    actor_learning_rate: float = opt(5e-7, "policy learning rate")
    lr_warmup_ratio: float = opt(0.03, "warmup as a fraction of all optimizer steps")
    min_lr_ratio: float = opt(0.1, "cosine decays to this fraction of the learning rate")
    adam_betas: list[float] = opt([0.9, 0.95], "Adam betas")
    l2: float = opt(0.0, "weight decay")
    max_norm: float = opt(1.0, "gradient clipping norm")
    zero_stage: int = opt(3, "DeepSpeed ZeRO stage (2 or 3; 0 for plain data parallel)")
    adam_offload: bool = opt(False, "optimizer states in CPU memory")
    advantage_estimator: Literal["reinforce", "reinforce_baseline", "group_norm", "rloo"] = opt(
        "reinforce", "advantage estimator (trainer/algorithms.py step A)")
    init_kl_coef: float = opt(0.01, "KL coefficient beta; 0 disables the reference model")
    kl_estimator: Literal["k1", "k2", "k3"] = opt("k1", "per-token KL estimator")
    gamma: float = opt(1.0, "discount of the return-to-go")
    eps_clip: float = opt(0.2, "PPO ratio clip (both sides unless the two below are set)")
    eps_clip_low: float = opt(0.0, "lower ratio clip (0: use --eps_clip)")
    eps_clip_high: float = opt(0.0, "upper ratio clip (0: use --eps_clip)")
    reward_clip_range: float = opt(10.0, "clip the (baselined) reward to [-x, x]")
    logprob_chunk_size: int = opt(1024, "tokens per chunk when computing log-probs (bounds logits memory)")
    packing_samples: bool = opt(False, "pack each micro-batch into one row without padding (position ids; "
                                       "varlen attention under flash_attention_2, block masks under sdpa)")
    seed: int = opt(42, "seed of everything (data order, sampling, init)")
    actor_num_nodes: int = opt(1, "nodes for the policy")
    actor_num_gpus_per_node: int = opt(1, "GPUs per node for the policy (0: CPU)")
    ref_num_gpus_per_node: int = opt(1, "GPUs per node for the reference model (0: CPU)")
    colocate_actor_ref: bool = opt(True, "reference rank i shares policy rank i's GPU (needs "
                                         "--ref_num_gpus_per_node = --actor_num_gpus_per_node)")
    colocate_all_models: bool = opt(False, "policy, reference and engines share the same GPUs (with "
                                           "--vllm_enable_sleep the engines sleep while the policy trains)")
    async_train: bool = opt(False, "one-step-off-policy: the engines generate the next steps' rollouts "
                                   "while the policy trains; the PPO ratio uses the engines' log-probs")
    async_queue_size: int = opt(1, "async: rollouts generated ahead of training, at most (= staleness in steps)")
    num_threads: int = opt(0, "torch/OpenMP threads of each actor and of the driver (0: an actor's Ray "
                              "num_cpus, at least 1; the driver: the cores it may run on)")


@dataclass
class RewardConfig:
    reward: list[str] = opt(["tests"], "rewards to use: tests, rm, or module:Class (a custom Reward subclass)")
    reward_weights: list[float] = opt([], "weights of the rewards above (default: all 1)")
    test_reward: Literal["binary", "pass_rate"] = opt("binary", "test reward: 1 if all tests pass, or the pass rate")
    reward_num_actors: int = opt(1, "reward actors (each owns its sandbox workers or reward model)")
    reward_timeout_s: float = opt(120.0, "a reward call that takes longer yields 0 with status 'timeout'")
    reward_retries: int = opt(2, "restarts of a dead reward actor before the step fails")
    reward_kwargs: dict = opt({}, "keyword arguments for custom rewards, by reward name")
    rm_batch_size: int = opt(16, "reward-model scoring batch")
    normalize_reward: bool = opt(False, "running normalisation of reward-model scores")


@dataclass
class CheckpointConfig:
    save_path: str = opt("outputs/run", "output directory: checkpoints, metrics, exports")
    save_steps: int = opt(50, "checkpoint every N steps (0: only at the end and on SIGTERM)", legacy=NEVER)
    max_ckpt_num: int = opt(3, "keep the newest N checkpoints")
    resume: str = opt("auto", "auto (newest complete checkpoint, else fresh), none, or a checkpoint path")
    save_hf_model: bool = opt(True, "export the policy with save_pretrained beside each checkpoint")


@dataclass
class LoggingConfig:
    logging_steps: int = opt(1, "log every N steps")
    eval_steps: int = opt(0, "evaluate held-out greedy pass rate every N steps (0: never)", legacy=NEVER)
    stop_at_eval_pass_rate: float = opt(0.0, "stop early once the held-out pass rate reaches this (0: never)")
    use_tensorboard: bool = opt(True, "TensorBoard logs under save_path/tensorboard")
    use_wandb: bool = opt(False, "log to Weights & Biases (WANDB_MODE=offline works without network)")
    wandb_project: str = opt("acecoder-rl", "W&B project")
    wandb_run_name: str = opt("", "W&B run name")
    progress_bar: bool = opt(True, "show a progress bar over steps")


@dataclass
class RLConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "RLConfig":
        validate(self)
        return self


SECTIONS = [f.name for f in dataclasses.fields(RLConfig)]
_SANDBOX_PREFIX = sandbox_options.PREFIX  # sandbox options are --sandbox_<name>, as in every command
# Other names of our options: alias -> option name. Mostly OpenRLHF's dotted groups (0.10.2 and later,
# openrlhf/cli/train_ppo_ray.py of 0.11), plus its older underscored names where ours differ. Only
# where the concept is the same: OpenRLHF's data.max_len (prompt + response), eval.temperature,
# reward.clip_range (two numbers), ckpt.load_enable, logger.wandb.key and rollout.vllm_generate_batch_size
# (it may exceed the rollout batch) mean other things than our nearest options. A group's name that
# equals one of our sections (train.seed, rollout.temperature, data.input_key, ...) needs no alias.
# They work on the command line and in YAML (as dotted keys or nested under the group).
ALIASES = {
    # model
    "actor.model_name_or_path": "pretrain",
    "reward.model_name_or_path": "reward_pretrain",
    "actor.gradient_checkpointing_enable": "gradient_checkpointing",
    "ds.attn_implementation": "attn_implementation",
    # data
    "data.prompt_dataset": "prompt_data",
    "eval.dataset": "eval_data",
    "eval_dataset": "eval_data",  # OpenRLHF <= 0.10.1
    # rollout
    "rollout.batch_size": "rollout_batch_size",
    "rollout.max_new_tokens": "generate_max_len",
    "max_new_tokens": "generate_max_len",  # OpenRLHF <= 0.10.1
    "vllm.num_engines": "vllm_num_engines",
    "vllm.tensor_parallel_size": "vllm_tensor_parallel_size",
    "vllm.gpu_memory_utilization": "vllm_gpu_memory_utilization",
    "vllm.enable_prefix_caching": "enable_prefix_caching",
    "vllm.enforce_eager": "enforce_eager",
    "vllm.sync_backend": "vllm_sync_backend",
    "vllm.enable_sleep": "vllm_enable_sleep",
    "algo.dynamic_filtering_enable": "dynamic_filtering",
    "algo.dynamic_filtering_range": "dynamic_filtering_reward_range",
    # train
    "train.batch_size": "train_batch_size",
    "train.micro_batch_size": "micro_train_batch_size",
    "actor.adam.lr": "actor_learning_rate",
    "actor.lr_warmup_ratio": "lr_warmup_ratio",
    "actor.min_lr_ratio": "min_lr_ratio",
    "actor.adam.betas": "adam_betas",
    "actor.adam.weight_decay": "l2",
    "actor.max_norm": "max_norm",
    "ds.zero_stage": "zero_stage",
    "ds.adam_offload": "adam_offload",
    "algo.advantage.estimator": "advantage_estimator",
    "algo.kl.init_coef": "init_kl_coef",
    "algo.kl.estimator": "kl_estimator",
    "algo.advantage.gamma": "gamma",
    "actor.eps_clip": "eps_clip",
    "ds.packing_samples": "packing_samples",
    "actor.num_nodes": "actor_num_nodes",
    "actor.num_gpus_per_node": "actor_num_gpus_per_node",
    "ref.num_gpus_per_node": "ref_num_gpus_per_node",
    "train.colocate_all": "colocate_all_models",
    "train.async_enable": "async_train",
    # reward
    "reward.normalize_enable": "normalize_reward",
    # checkpoint
    "ckpt.output_dir": "save_path",
    "ckpt.save_steps": "save_steps",
    "ckpt.max_num": "max_ckpt_num",
    "ckpt.save_hf": "save_hf_model",
    "save_hf_ckpt": "save_hf_model",  # OpenRLHF <= 0.10.1
    # logging
    "logger.logging_steps": "logging_steps",
    "eval.steps": "eval_steps",
    "logger.wandb.project": "wandb_project",
    "logger.wandb.run_name": "wandb_run_name",
}


def _flat_fields() -> dict[str, tuple[str, dataclasses.Field, Any]]:
    """Option name -> (section, field, field type)."""
    out = {}
    for sec in dataclasses.fields(RLConfig):
        cls = sec.default_factory  # type: ignore[misc]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            name = _SANDBOX_PREFIX + f.name if sec.name == "sandbox" else f.name
            assert name not in out, f"option {name} defined twice"
            out[name] = (sec.name, f, hints[f.name])
    return out


def _set(cfg: RLConfig, name: str, value: Any, source: str) -> None:
    fields = _flat_fields()
    name = ALIASES.get(name, name)
    if "." in name:
        sec, _, short = name.partition(".")
        name = _SANDBOX_PREFIX + short if sec == "sandbox" else short
        if name not in fields or fields[name][0] != sec:
            raise ConfigError(f"{source}: unknown option {sec}.{short}")
    if name not in fields:
        close = [n for n in fields if n.startswith(name[:4])][:5]
        raise ConfigError(f"{source}: unknown option --{name}"
                          + (f" (did you mean {', '.join(close)}?)" if close else ""))
    sec, f, typ = fields[name]
    setattr(getattr(cfg, sec), f.name, legacy_value(f"--{name}", coerce(name, typ, value), f.metadata.get("legacy")))


def _is_group(key: str) -> bool:
    """A YAML key whose mapping holds options (a section, or an alias group such as algo.kl)."""
    return key in SECTIONS or any(a.startswith(key + ".") for a in ALIASES)


def _yaml_items(key: str, value: Any):
    if isinstance(value, dict) and _is_group(key):
        for k, v in value.items():
            yield from _yaml_items(f"{key}.{k}", v)
    else:
        yield key, value


def load_yaml(path: str, cfg: RLConfig) -> None:
    import yaml

    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options")
    for top, nested in data.items():
        for key, value in _yaml_items(str(top), nested):
            _set(cfg, key, value, path)


class _HelpFormatter(HelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    """Every option of every section, generated from the dataclasses: ``--name``, ``--section.name``
    and its ALIASES, all listed by --help. Values stay words until ``load_config`` reads them."""
    p = argparse.ArgumentParser(prog="python -m trainer", description="Reinforce++ RL for code models on Ray.",
                                formatter_class=_HelpFormatter)
    p.add_argument("--config", action="append", default=[], help="YAML file(s) of options, applied in order")
    defaults = RLConfig()

    def names(sec: str, name: str, short: str) -> list[str]:
        extra = [f"--{sec}.{short}"] + [f"--{a}" for a, target in ALIASES.items() if target == name]
        return list(dict.fromkeys(extra))  # a group name that equals ours is listed once

    for sec in dataclasses.fields(RLConfig):
        prefix = _SANDBOX_PREFIX if sec.name == "sandbox" else ""
        add_dataclass_options(p.add_argument_group(sec.name), type(getattr(defaults, sec.name)), prefix=prefix,
                              deferred=True, extra_names=lambda n, s=sec.name, pre=prefix: names(s, n, n[len(pre):]))
    return p


def load_config(argv: list[str] | None = None) -> RLConfig:
    """Defaults, then each --config YAML in order, then command-line options; then validation."""
    args = build_parser().parse_args(argv)
    cfg = RLConfig()
    for path in args.config:
        load_yaml(path, cfg)
    for name, value in vars(args).items():
        if name != "config":
            _set(cfg, name, value, "command line")
    return cfg.validate()


def validate(cfg: RLConfig) -> None:
    """Every check names the option at fault."""
    r, t, w = cfg.rollout, cfg.train, cfg.reward

    def need(ok: bool, option: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"--{option}: {msg}")

    need(bool(cfg.model.pretrain), "pretrain", "a policy model is required")
    need(r.rollout_batch_size >= 1, "rollout_batch_size", "must be >= 1")
    need(r.n_samples_per_prompt >= 1, "n_samples_per_prompt", "must be >= 1")
    need(r.temperature >= 0, "temperature", "must be >= 0")
    need(0 < r.top_p <= 1, "top_p", "must be in (0, 1]")
    need(r.generate_max_len >= 1, "generate_max_len", "must be >= 1")
    need(r.vllm_num_engines >= 1, "vllm_num_engines", "must be >= 1")
    need(r.max_logprob_diff >= 0, "max_logprob_diff", "must be >= 0")
    total = r.rollout_batch_size * r.n_samples_per_prompt
    need(t.train_batch_size >= 1 and total % t.train_batch_size == 0, "train_batch_size",
         f"must divide rollout_batch_size x n_samples_per_prompt = {total}")
    need(t.micro_train_batch_size >= 1 and t.train_batch_size % t.micro_train_batch_size == 0,
         "micro_train_batch_size", f"must divide train_batch_size = {t.train_batch_size}")
    need(t.actor_learning_rate > 0, "actor_learning_rate", "must be > 0")
    need(0 <= t.lr_warmup_ratio < 1, "lr_warmup_ratio", "must be in [0, 1)")
    need(0 <= t.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]")
    need(len(t.adam_betas) == 2 and all(0 <= b < 1 for b in t.adam_betas), "adam_betas", "two numbers in [0, 1)")
    need(t.zero_stage in (0, 1, 2, 3), "zero_stage", "must be 0, 1, 2 or 3")
    need(t.init_kl_coef >= 0, "init_kl_coef", "must be >= 0")
    need(0 <= t.gamma <= 1, "gamma", "must be in [0, 1]")
    need(t.eps_clip > 0, "eps_clip", "must be > 0")
    need(t.max_epochs >= 1, "max_epochs", "must be >= 1")
    need(t.seed >= 0, "seed", "must be >= 0")
    if t.advantage_estimator != "reinforce":
        need(r.n_samples_per_prompt >= 2, "n_samples_per_prompt",
             f"{t.advantage_estimator} needs at least 2 samples per prompt")
    need(len(w.reward) >= 1, "reward", "name at least one reward")
    for name in w.reward:
        need(name in ("tests", "rm") or ":" in name, "reward", f"{name!r} is not tests, rm or module:Class")
    need(not w.reward_weights or len(w.reward_weights) == len(w.reward), "reward_weights",
         f"give one weight per reward ({len(w.reward)})")
    need("rm" not in w.reward or bool(cfg.model.reward_pretrain), "reward_pretrain", "the rm reward needs a model")
    need(w.reward_timeout_s > 0, "reward_timeout_s", "must be > 0")
    need(w.reward_num_actors >= 1, "reward_num_actors", "must be >= 1")
    need(t.async_queue_size >= 1, "async_queue_size", "must be >= 1")
    need(t.num_threads >= 0, "num_threads", "must be >= 0")
    need(not (t.colocate_actor_ref and t.init_kl_coef > 0 and t.actor_num_gpus_per_node and t.ref_num_gpus_per_node)
         or t.ref_num_gpus_per_node == t.actor_num_gpus_per_node, "ref_num_gpus_per_node",
         f"must equal --actor_num_gpus_per_node ({t.actor_num_gpus_per_node}) when --colocate_actor_ref puts each "
         "reference rank on a policy GPU (or pass --colocate_actor_ref false)")
    need(not (t.async_train and t.colocate_all_models), "async_train",
         "cannot overlap generation and training when --colocate_all_models puts them on the same GPUs")
    need(not r.vllm_enable_sleep or t.colocate_all_models, "vllm_enable_sleep",
         "engines only sleep when they share GPUs with the policy (--colocate_all_models)")
    need(r.dynamic_filtering_max_rounds >= 1, "dynamic_filtering_max_rounds", "must be >= 1")
    rng = r.dynamic_filtering_reward_range
    need(not rng or (len(rng) == 2 and rng[0] < rng[1]), "dynamic_filtering_reward_range",
         f"give two numbers LOW < HIGH, got {rng}")
    need(not r.dynamic_filtering or r.n_samples_per_prompt >= 2, "dynamic_filtering",
         "needs --n_samples_per_prompt >= 2 (a group of one has no variance)")
    need(cfg.checkpoint.max_ckpt_num >= 1, "max_ckpt_num", "must be >= 1")
    need(cfg.checkpoint.save_steps >= 0, "save_steps", "must be >= 0")
    need(t.max_steps >= 0, "max_steps", "must be >= 0 (0: no limit)")
    need(cfg.logging.eval_steps >= 0, "eval_steps", "must be >= 0 (0: never)")
    for option, msg in sandbox_options.problems(cfg.sandbox):
        need(False, option, msg)
    need(not cfg.sandbox.unsafe_no_isolation, "sandbox_unsafe_no_isolation",
         "refused for training runs: model output must never run without isolation")
