#!/usr/bin/env bash
# The paper's rule-reward RL run from Qwen2.5-Coder-7B base (settings: launch/configs/rl_qwen_base.yaml).
#
#   ray job submit --address http://127.0.0.1:8265 --working-dir . -- bash launch/rl_qwen_base.sh
#   bash launch/rl_qwen_base.sh            # on a machine that is itself the Ray head
#
# Environment overrides: MODEL, DATA, OUTPUT_DIR, NUM_NODES, GPUS_PER_NODE (policy, and reference
# beside it), VLLM_ENGINES, VLLM_TP, PYTHON. Extra arguments are trainer options and win, e.g.
#   bash launch/rl_qwen_base.sh --max_steps 20 --actor_learning_rate 1e-6
# Restarting the same command resumes from the newest complete checkpoint in OUTPUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
args=(--config launch/configs/rl_qwen_base.yaml)
[ -n "${MODEL:-}" ] && args+=(--pretrain "$MODEL")
[ -n "${DATA:-}" ] && args+=(--prompt_data "$DATA")
[ -n "${OUTPUT_DIR:-}" ] && args+=(--save_path "$OUTPUT_DIR")
[ -n "${NUM_NODES:-}" ] && args+=(--actor_num_nodes "$NUM_NODES")
[ -n "${GPUS_PER_NODE:-}" ] && args+=(--actor_num_gpus_per_node "$GPUS_PER_NODE" --ref_num_gpus_per_node "$GPUS_PER_NODE")
[ -n "${VLLM_ENGINES:-}" ] && args+=(--vllm_num_engines "$VLLM_ENGINES")
[ -n "${VLLM_TP:-}" ] && args+=(--vllm_tensor_parallel_size "$VLLM_TP")
exec "${PYTHON:-python3}" -m trainer "${args[@]}" "$@"
