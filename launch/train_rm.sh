#!/usr/bin/env bash
# Train the AceCoder Bradley-Terry reward model with DeepSpeed.
#
#   bash launch/train_rm.sh                                   # the paper's settings
#   MODEL=... DATA=pairs.jsonl OUTPUT_DIR=out/rm bash launch/train_rm.sh --save_steps 100
#   ray job submit --working-dir . -- bash launch/train_rm.sh  # same job on a Ray cluster's head node
#
# Every setting below is an environment variable with the paper's value as default; any further
# arguments go to `python -m apps.train_rm` unchanged (they win over the ones set here). One GPU or
# CPU: one process. Several GPUs on this node: torchrun starts one process per GPU. Re-running the
# same command resumes from the newest complete checkpoint in OUTPUT_DIR (--resume auto).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODEL=${MODEL:-Qwen/Qwen2.5-Coder-7B-Instruct}  # backbone (the paper's RM base)
DATA=${DATA:-data/pairs.jsonl}                  # preference pairs from data_prep's pairs stage
EVAL_DATA=${EVAL_DATA:-}                        # held-out pairs file; empty: hold out EVAL_SPLIT of prompts
EVAL_SPLIT=${EVAL_SPLIT:-0.01}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/rm}
ZERO_STAGE=${ZERO_STAGE:-3}
LR=${LR:-1e-5}
WARMUP_RATIO=${WARMUP_RATIO:-0.1}
GLOBAL_BATCH=${GLOBAL_BATCH:-128}
MICRO_BATCH=${MICRO_BATCH:-1}                   # pairs per GPU per forward (2 sequences each)
MAX_LEN=${MAX_LEN:-2048}
EPOCHS=${EPOCHS:-1}
SAVE_STEPS=${SAVE_STEPS:-200}
MAX_CKPTS=${MAX_CKPTS:-2}
SEED=${SEED:-42}
PYTHON=${PYTHON:-python}
if [[ -z "${NUM_GPUS:-}" ]]; then
  NUM_GPUS=$(nvidia-smi -L 2>/dev/null | wc -l || true)
fi

args=(--pretrain "$MODEL" --dataset "$DATA" --save_path "$OUTPUT_DIR" --zero_stage "$ZERO_STAGE"
      --learning_rate "$LR" --lr_warmup_ratio "$WARMUP_RATIO" --train_batch_size "$GLOBAL_BATCH"
      --micro_train_batch_size "$MICRO_BATCH" --max_len "$MAX_LEN" --max_epochs "$EPOCHS"
      --save_steps "$SAVE_STEPS" --max_ckpt_num "$MAX_CKPTS" --seed "$SEED" --gradient_checkpointing
      --resume auto)
if [[ -n "$EVAL_DATA" ]]; then args+=(--eval_dataset "$EVAL_DATA"); else args+=(--eval_split "$EVAL_SPLIT"); fi

if [[ "${NUM_GPUS:-0}" -gt 1 ]]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NUM_GPUS" \
    -m apps.train_rm "${args[@]}" "$@"
fi
exec "$PYTHON" -m apps.train_rm "${args[@]}" "$@"
