"""Train the Bradley-Terry reward model with DeepSpeed ZeRO.

    python -m apps.train_rm --pretrain MODEL --dataset pairs.jsonl --save_path out/rm --eval_split 0.01

Each micro-batch scores chosen and rejected programs in ONE forward pass; the loss is
-logsigmoid(r_chosen - r_rejected) averaged in fp32. Option names follow OpenRLHF's train_rm where
the concept is the same. Works as one process on CPU (gloo) and under the deepspeed/torchrun
launchers on GPUs. Outputs: SAVE_PATH/metrics.jsonl, TensorBoard, step checkpoints in
--ckpt_path (the RL trainer's format, trainer/checkpoint.py) and SAVE_PATH/final, loadable with
RewardModel.from_pretrained.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import random
import shutil
import time
import warnings

import numpy as np
import torch

from common.options import legacy_int
from rewards.reward_model import RewardModel, bradley_terry_loss
from rewards.rm_data import collate, load_pairs, micro_batches, split_by_prompt
from trainer import checkpoint
from common.lr_schedule import warmup_cosine_factor
from common.net import init_distributed
from trainer.tracking import MetricsLog

log = logging.getLogger("apps.train_rm")
NEVER = {-1: 0}  # the -1 these options took before (and OpenRLHF takes) is 0, as in every command


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (or says it is required), stated once."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required:
            return text + " (required)"
        if "default" in text or action.default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.train_rm", description=__doc__.split("\n\n")[0],
                                formatter_class=_HelpFormatter)
    a = p.add_argument
    a("--pretrain", required=True, help="backbone: local dir or hub id (a causal LM or a reward model)")
    a("--dataset", required=True, help="training pairs, JSONL or Parquet: prompt|question, chosen, rejected")
    a("--eval_dataset", default=None, help="held-out pairs file; overrides --eval_split")
    a("--eval_split", type=float, default=0.0, help="fraction of prompts held out for eval when no --eval_dataset")
    a("--save_path", default="./ckpt/rm", help="output dir: metrics.jsonl, tensorboard/, checkpoints/, final/")
    a("--ckpt_path", default=None, help="step checkpoints dir (default: SAVE_PATH/checkpoints)")
    a("--resume", default=None,
      help="'auto': newest complete checkpoint in --ckpt_path (fresh start if none); or a checkpoint dir")
    a("--zero_stage", type=int, default=2, help="DeepSpeed ZeRO stage: 0, 1, 2 or 3")
    a("--bf16", action=argparse.BooleanOptionalAction, default=None,
      help="bf16 weights (default: on with a GPU, off on CPU)")
    a("--learning_rate", type=float, default=1e-5, help="peak AdamW learning rate")
    a("--min_lr_ratio", type=float, default=0.1, help="cosine decays to learning_rate * this")
    a("--lr_warmup_ratio", type=float, default=0.1, help="fraction of steps of linear warmup")
    a("--adam_betas", type=float, nargs=2, default=(0.9, 0.95), help="AdamW betas")
    a("--l2", type=float, default=0.0, help="AdamW weight decay (not applied to biases and norms)")
    a("--max_norm", type=float, default=1.0, help="gradient clipping norm")
    a("--fused_adam", action="store_true", help="DeepSpeed FusedAdam (JIT-built; GPU only) instead of torch AdamW")
    a("--train_batch_size", type=int, default=128, help="pairs per optimizer step, all ranks together")
    a("--micro_train_batch_size", type=int, default=4, help="pairs per forward per rank (2x sequences)")
    a("--max_len", type=int, default=2048, help="max tokens per sequence; longer ones lose prompt tokens from the left")
    a("--max_epochs", type=int, default=1, help="passes over the training pairs")
    a("--gradient_checkpointing", action="store_true", help="recompute activations in backward to save memory")
    a("--seed", type=int, default=42, help="seed for init, shuffling, dropout and the eval split")
    a("--logging_steps", type=int, default=1, help="log train metrics every N optimizer steps")
    a("--eval_steps", type=legacy_int("--eval_steps", NEVER), default=0,
      help="evaluate every N steps; 0: at the end of each epoch only")
    a("--save_steps", type=legacy_int("--save_steps", NEVER), default=0,
      help="checkpoint every N steps; 0: no step checkpoints (the final model is always saved)")
    a("--max_ckpt_num", "--max_ckpts", dest="max_ckpt_num", type=int, default=2, help="complete checkpoints kept")
    a("--stop_at_step", type=int, default=0,
      help="checkpoint and exit after this step (the schedule still spans the full run); 0: never")
    a("--use_tensorboard", default="auto", help="TensorBoard dir; 'auto': SAVE_PATH/tensorboard; 'none': off")
    a("--local_rank", type=int, default=-1, help="set by the deepspeed launcher; leave it")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    checks = [
        ("--zero_stage", args.zero_stage in (0, 1, 2, 3), "must be 0, 1, 2 or 3"),
        ("--learning_rate", args.learning_rate > 0, "must be > 0"),
        ("--min_lr_ratio", 0 <= args.min_lr_ratio <= 1, "must be in [0, 1]"),
        ("--lr_warmup_ratio", 0 <= args.lr_warmup_ratio <= 1, "must be in [0, 1]"),
        ("--l2", args.l2 >= 0, "must be >= 0"),
        ("--max_norm", args.max_norm > 0, "must be > 0"),
        ("--train_batch_size", args.train_batch_size >= 1, "must be >= 1"),
        ("--micro_train_batch_size", args.micro_train_batch_size >= 1, "must be >= 1"),
        ("--max_len", args.max_len >= 2, "must be >= 2"),
        ("--max_epochs", args.max_epochs >= 1, "must be >= 1"),
        ("--eval_split", 0 <= args.eval_split < 1, "must be in [0, 1)"),
        ("--logging_steps", args.logging_steps >= 1, "must be >= 1"),
        ("--eval_steps", args.eval_steps >= 0, "must be >= 0 (0: at the end of each epoch)"),
        ("--save_steps", args.save_steps >= 0, "must be >= 0 (0: no step checkpoints)"),
        ("--max_ckpt_num", args.max_ckpt_num >= 1, "must be >= 1"),
        ("--stop_at_step", args.stop_at_step >= 0, "must be >= 0 (0: never)"),
        ("--dataset", os.path.isfile(args.dataset), f"no such file: {args.dataset}"),
        ("--eval_dataset", args.eval_dataset is None or os.path.isfile(args.eval_dataset),
         f"no such file: {args.eval_dataset}"),
        ("--resume", args.resume in (None, "auto") or checkpoint.is_complete(args.resume),
         f"{args.resume} is not a complete checkpoint dir (expected {checkpoint.COMPLETE} in it)"),
    ]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    checks.append(("--train_batch_size", args.train_batch_size % (args.micro_train_batch_size * world) == 0,
                   f"{args.train_batch_size} is not a multiple of --micro_train_batch_size x world size "
                   f"({args.micro_train_batch_size} x {world})"))
    for opt, ok, msg in checks:
        if not ok:
            p.error(f"{opt}: {msg}")
    args.ckpt_path = args.ckpt_path or os.path.join(args.save_path, "checkpoints")
    return args


def ds_config(args, world: int, bf16: bool) -> dict:
    zero = {"stage": args.zero_stage, "contiguous_gradients": True}
    if args.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    cfg = {
        "train_batch_size": args.train_batch_size,
        "train_micro_batch_size_per_gpu": args.micro_train_batch_size,
        "gradient_accumulation_steps": args.train_batch_size // (args.micro_train_batch_size * world),
        "gradient_clipping": args.max_norm,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": {"lr": args.learning_rate, "betas": list(args.adam_betas),
                                                   "eps": 1e-8, "weight_decay": args.l2,
                                                   "torch_adam": not args.fused_adam, "adam_w_mode": True}},
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if bf16:
        cfg["data_types"] = {"grad_accum_dtype": "fp32"}  # accumulate micro-batch grads in fp32
    return cfg


TAG = "ds"  # DeepSpeed's tag: its files go to CHECKPOINT/ds/


def save_checkpoint(engine, root: str, step: int, trainer_state: dict, max_keep: int, rank: int) -> None:
    """Checkpoint ``step`` under ``root``: every rank writes its DeepSpeed shard into one staging
    directory, rank 0 adds the trainer state with every rank's RNG states and commits."""
    dist = torch.distributed
    tmp = [checkpoint.staging_dir(root, step) if rank == 0 else None]
    dist.broadcast_object_list(tmp, src=0)  # the root must be on a filesystem all ranks share
    engine.save_checkpoint(str(tmp[0]), tag=TAG)
    rngs = [None] * dist.get_world_size()
    dist.all_gather_object(rngs, checkpoint.rng_state())
    if rank == 0:
        checkpoint.commit(tmp[0], root, step, {**trainer_state, "rank_rng": rngs}, max_keep)
    dist.barrier()


def load_checkpoint(engine, path, world: int, rank: int) -> dict:
    """Restore the engine (model, optimizer, scheduler) and this rank's RNG states; return the
    trainer state."""
    state = checkpoint.load_state(path)
    if state["world_size"] != world:
        raise ValueError(f"--resume {path}: saved with {state['world_size']} processes, now {world}; "
                         "ZeRO optimizer shards only load into the same world size")
    load_path, _ = engine.load_checkpoint(str(path), tag=TAG, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if load_path is None:
        raise ValueError(f"--resume {path}: DeepSpeed could not load {os.path.join(path, TAG)}")
    checkpoint.set_rng_state(state["rank_rng"][rank])
    return state


def open_metrics(args, rank: int, resumed_step: int) -> MetricsLog | None:
    """SAVE_PATH/metrics.jsonl and TensorBoard, written by rank 0 (None on the other ranks)."""
    if rank != 0:
        return None
    tb_dir = args.use_tensorboard
    if tb_dir == "none":
        tb_dir = None
    elif tb_dir == "auto":
        tb_dir = os.path.join(args.save_path, "tensorboard")
    return MetricsLog(os.path.join(args.save_path, "metrics.jsonl"), resumed_step, tb_dir)


def reduce_sums(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def evaluate(engine, tokenizer, pairs, args, pad_id, rank, world, device) -> dict:
    """Held-out pairwise accuracy (r_chosen > r_rejected), mean margin and loss, over all ranks."""
    engine.eval()
    shard, bs = pairs[rank::world], args.micro_train_batch_size
    # Under ZeRO-3 every forward is collective: all ranks must run the same number of batches.
    n_batches = math.ceil(math.ceil(len(pairs) / world) / bs)
    sums = [0.0, 0.0, 0.0, 0.0]  # correct, margin, loss, n
    for b in range(n_batches):
        chunk = shard[b * bs:(b + 1) * bs]
        batch = collate(tokenizer, chunk or pairs[:1], args.max_len, pad_id)  # dummy batch, ignored
        r = engine(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        if chunk:
            n = len(chunk)
            margin = r[:n] - r[n:]
            sums = [sums[0] + (margin > 0).sum().item(), sums[1] + margin.sum().item(),
                    sums[2] + bradley_terry_loss(r[:n], r[n:]).item() * n, sums[3] + n]
    engine.train()
    correct, margin, loss, n = reduce_sums(sums, device)
    return {"eval/acc": correct / n, "eval/margin": margin / n, "eval/loss": loss / n, "eval/pairs": int(n)}


def export(engine, tokenizer, args, rank: int) -> str:
    """Write SAVE_PATH/final (RewardModel.save_pretrained + tokenizer), replacing it atomically."""
    import deepspeed

    model, final = engine.module, os.path.join(args.save_path, "final")
    tmp = final + ".tmp"
    params = list(model.parameters()) if args.zero_stage == 3 else []
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=args.zero_stage == 3):
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp, state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()})
            tokenizer.save_pretrained(tmp)
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return final


def main(argv=None) -> dict:
    args = parse_args(argv)
    import deepspeed
    from tqdm import tqdm
    from transformers import AutoTokenizer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # its INFO dumps the whole config
    # ZeRO calls torch.distributed's all_gather_into_tensor / reduce_scatter_tensor every step.
    warnings.filterwarnings("ignore", message=r".*is deprecated. Please use `torch.distributed", category=FutureWarning)
    cuda = torch.cuda.is_available()
    rank, world = init_distributed("cuda" if cuda else "cpu")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    bf16 = device.type == "cuda" if args.bf16 is None else args.bf16
    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(args.pretrain)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train = load_pairs(args.dataset)
    if args.eval_dataset:
        eval_pairs = load_pairs(args.eval_dataset)
    else:
        train, eval_pairs = split_by_prompt(train, args.eval_split, args.seed)
    steps_per_epoch = len(train) // args.train_batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"--train_batch_size {args.train_batch_size} is larger than the {len(train)} training pairs")
    total = steps_per_epoch * args.max_epochs
    gas = args.train_batch_size // (args.micro_train_batch_size * world)
    if rank == 0:
        log.info("%d train pairs (%d dropped per epoch to fill whole steps), %d eval pairs; %d steps, zero %d, %s",
                 len(train), len(train) - steps_per_epoch * args.train_batch_size, len(eval_pairs), total,
                 args.zero_stage, "bf16" if bf16 else "fp32")

    config = ds_config(args, world, bf16)
    if args.zero_stage == 3:  # partition weights as they load instead of materialising them per rank
        from transformers.integrations import HfDeepSpeedConfig
        _keep_alive = HfDeepSpeedConfig(config)  # noqa: F841  (from_pretrained looks it up while alive)
    model = RewardModel.from_pretrained(args.pretrain, dtype=torch.bfloat16 if bf16 else torch.float32)
    if args.gradient_checkpointing:
        kw = {"use_reentrant": False}  # the non-reentrant form works with ZeRO-3 hooks and frozen inputs
        if hasattr(model.model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
            model.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "norm" in n)]
    groups = [{"params": decay, "weight_decay": args.l2}, {"params": no_decay, "weight_decay": 0.0}]
    schedule = functools.partial(warmup_cosine_factor, max_steps=total, lr_warmup_ratio=args.lr_warmup_ratio,
                                 min_lr_ratio=args.min_lr_ratio)
    engine, *_ = deepspeed.initialize(model=model, config=config, model_parameters=groups,
                                      lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule))

    state = {"step": 0, "epoch": 0, "micro_batch": 0}
    resume = checkpoint.find_resume(args.ckpt_path, args.resume or "none")
    if resume:
        state = load_checkpoint(engine, resume, world, rank)
        log.info("resumed from %s at step %d", resume, state["step"])
    metrics = open_metrics(args, rank, state["step"])

    def log_metrics(step: int, row: dict) -> None:
        if metrics is not None:
            metrics.log(step, row)

    bar = tqdm(total=total, initial=state["step"], disable=rank != 0, desc="train_rm", dynamic_ncols=True)
    eval_every = args.eval_steps if args.eval_steps > 0 else steps_per_epoch
    step, last_eval, stopped = state["step"], {}, False
    sums, tokens, t0 = [0.0, 0.0, 0.0, 0.0], 0, time.time()  # loss*n, correct, margin, n

    def save(epoch: int, next_micro: int) -> None:
        if next_micro == steps_per_epoch * gas:  # epoch finished: the next position is the next epoch
            epoch, next_micro = epoch + 1, 0
        save_checkpoint(engine, args.ckpt_path, step, {"step": step, "epoch": epoch, "micro_batch": next_micro,
                                                       "world_size": world, "args": vars(args)}, args.max_ckpt_num,
                        rank)

    for epoch in range(state["epoch"], args.max_epochs):
        batches = micro_batches(len(train), args.micro_train_batch_size, world, rank, args.seed, epoch)
        batches = batches[:steps_per_epoch * gas]
        start = state["micro_batch"] if epoch == state["epoch"] else 0
        for i in range(start, len(batches)):
            batch = collate(tokenizer, [train[j] for j in batches[i]], args.max_len, pad_id)
            n = batch["n_pairs"]
            r = engine(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            loss = bradley_terry_loss(r[:n], r[n:])
            engine.backward(loss)
            engine.step()
            margin = (r[:n] - r[n:]).detach()
            sums = [sums[0] + loss.item() * n, sums[1] + (margin > 0).sum().item(), sums[2] + margin.sum().item(),
                    sums[3] + n]
            tokens += int(batch["attention_mask"].sum())
            if (i + 1) % gas:
                continue
            step += 1
            bar.update(1)
            if step % args.logging_steps == 0 or step == total:
                loss_sum, correct, margin_sum, n_all, tok = reduce_sums(sums + [tokens], device)
                dt = time.time() - t0
                row = {"train/loss": loss_sum / n_all, "train/acc": correct / n_all, "train/margin": margin_sum / n_all,
                       "train/lr": engine.get_lr()[0], "train/grad_norm": float(engine.get_global_grad_norm() or 0.0),
                       "train/epoch": epoch + (i + 1) / len(batches), "timing/step_s": dt / args.logging_steps,
                       "perf/tokens_per_s": tok / dt}
                log_metrics(step, row)
                bar.set_postfix(loss=f"{row['train/loss']:.4f}", acc=f"{row['train/acc']:.3f}")
                sums, tokens, t0 = [0.0, 0.0, 0.0, 0.0], 0, time.time()
            if eval_pairs and (step % eval_every == 0 or step == total):
                last_eval = evaluate(engine, tokenizer, eval_pairs, args, pad_id, rank, world, device)
                log_metrics(step, last_eval)
                if rank == 0:
                    log.info("step %d: %s", step, json.dumps(last_eval))
            if (args.save_steps > 0 and step % args.save_steps == 0) or step == args.stop_at_step:
                save(epoch, i + 1)
            if step == args.stop_at_step:
                stopped = True
                break
        if stopped:
            break
    bar.close()
    result = {"step": step, "stopped": stopped, **last_eval}
    if not stopped:
        if eval_pairs and not last_eval:
            result.update(evaluate(engine, tokenizer, eval_pairs, args, pad_id, rank, world, device))
        result["final"] = export(engine, tokenizer, args, rank)
        log_metrics(step, {k: v for k, v in result.items() if k.startswith("eval/")} | {"done": 1})
    if metrics is not None:
        metrics.close()
    return result


if __name__ == "__main__":
    main()
