#!/usr/bin/env bash
# Real-model RL on CPU: SmolLM2-135M-Instruct, Reinforce++ with sandbox rewards on MBPP training
# prompts, greedy pass@1 before/after on held-out MBPP (test split) + HumanEval+; writes
# OUTPUT_DIR/summary.json (default outputs/demo_real_cpu), curve.png and a table. Running it again
# resumes from the newest checkpoint. MAX_STEPS overrides the config's step count,
# HELDOUT_LIMIT=K keeps the first K tasks of each held-out set (0: all); extra arguments
# after the script name are trainer options (e.g. --actor_learning_rate 1e-6).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup_env.sh"
cd "$ROOT"
exec "$ACECODER_PYTHON" -m apps.demo_real --output_dir "${OUTPUT_DIR:-outputs/demo_real_cpu}" --max_steps "${MAX_STEPS:-0}" \
  --heldout_limit "${HELDOUT_LIMIT:-0}" -- "$@"
