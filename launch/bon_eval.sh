#!/usr/bin/env bash
# Best-of-N evaluation: greedy, average, oracle and RM-selected pass rates on
# HumanEval, HumanEval+, MBPP and MBPP+, with samples generated once at max(N) and reused for every N.
#
#   bash launch/bon_eval.sh                                             # the paper's setting
#   MODEL=out/rl/hf RM=out/rm/final N_LIST=16 BENCHMARKS=humaneval bash launch/bon_eval.sh --limit 20
#   ray job submit --working-dir . -- bash launch/bon_eval.sh            # same job on a Ray cluster's head node
#
# Every setting below is an environment variable; any further arguments go to
# `python -m apps.bon_eval` unchanged (they win over the ones set here; --help lists them all).
# No Ray is used inside. Re-running the same command continues from the cached samples, sandbox
# results and RM scores in OUTPUT_DIR. Under `ray job submit` the working directory is a temporary
# copy: give OUTPUT_DIR and DATA_DIR as absolute paths on a disk that outlives the job.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODEL=${MODEL:-Qwen/Qwen2.5-Coder-7B-Instruct}   # the policy to evaluate
RM=${RM-TIGER-Lab/AceCodeRM-7B}                  # reward model for the RM column; RM= (empty): no RM column
BENCHMARKS=${BENCHMARKS:-humaneval,humanevalplus,mbpp,mbppplus}
N_LIST=${N_LIST:-16,32,64}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/bon_eval}
ENGINE=${ENGINE:-auto}                           # auto: vllm with a GPU, hf (transformers) without
TEMPERATURE=${TEMPERATURE:-1.0}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-1024}
SEED=${SEED:-0}
DATA_DIR=${DATA_DIR:-${ACECODER_DATA_DIR:-}}     # benchmark files; empty: ../shared/data
PYTHON=${PYTHON:-python}

args=(--model "$MODEL" --rm "$RM" --benchmarks "$BENCHMARKS" --n_list "$N_LIST" --output_dir "$OUTPUT_DIR"
      --engine "$ENGINE" --temperature "$TEMPERATURE" --max_new_tokens "$MAX_NEW_TOKENS" --seed "$SEED")
if [[ -n "$DATA_DIR" ]]; then args+=(--data_dir "$DATA_DIR"); fi
exec "$PYTHON" -m apps.bon_eval "${args[@]}" "$@"
