#!/usr/bin/env bash
# The test suite, after setting up what is missing (see launch/setup_env.sh). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NEEDED_MODULES="torch, ray, deepspeed, transformers, pyseccomp, yaml, tqdm, pytest, pytest_timeout, datasets" \
  source "$ROOT/launch/setup_env.sh"
cd "$ROOT"
# --durations: every CI log names its slowest tests, so the suite can be kept near its time budget
exec "$ACECODER_PYTHON" -m pytest -q --timeout=1200 --durations=40 "$@"
