#!/usr/bin/env bash
# The lint: ruff with the [tool.ruff] rules of pyproject.toml, after setting up what is missing (see
# launch/setup_env.sh; ruff comes with the dev extra). Extra arguments go to `ruff check`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NEEDED_MODULES="ruff" source "$ROOT/launch/setup_env.sh"
cd "$ROOT"
exec "$ACECODER_PYTHON" -m ruff check . "$@"
