#!/usr/bin/env bash
# The CPU demo: warm start a tiny Qwen2, then Reinforce++ with sandbox rewards on a local Ray cluster.
# Honours OUTPUT_DIR (default outputs/demo_cpu) and MAX_STEPS (default 60); extra arguments are
# trainer options (e.g. --actor_learning_rate 1e-4). Sets up what is missing on a fresh machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup_env.sh"
cd "$ROOT"
exec "$ACECODER_PYTHON" -m trainer.demo --output_dir "${OUTPUT_DIR:-outputs/demo_cpu}" --max_steps "${MAX_STEPS:-60}" -- "$@"
