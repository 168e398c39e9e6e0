#!/usr/bin/env bash
# Issue 6's GPU benchmarks in one command, on a bare GPU machine (torch and transformers present; no
# Ray, DeepSpeed or network). Here, first: `bash ../shared/gpu/fetch_wheels.sh` (fills .whl/), then
# carry .whl to the GPU machine and run this script from the repository root there:
#   bash benchmarks/gpu/run_all.sh [SHAPE ...]        (default: 0.5b 1.5b; "toy" runs on CPU for CI)
# Each script prints its table and writes OUT/<script>_<shape>.json (OUT defaults to ./gpu_results).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-gpu_results}"
mkdir -p "$OUT"
if ! python3 -c "import deepspeed" 2>/dev/null; then
  [ -d .whl ] || { echo "DeepSpeed is missing and there is no .whl/ here: run ../shared/gpu/fetch_wheels.sh first" >&2; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/acecoder_site .whl/*.whl
  export PYTHONPATH="/tmp/acecoder_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"  # FusedAdam's JIT build fails on "9.0a"
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(0.5b 1.5b)
for shape in "${shapes[@]}"; do
  toy=()
  if [ "$shape" = toy ]; then
    policy=(--batch 4 --micro_batch 2 --prompt_len 8,16 --response_len 4,24 --steps 1)
    gen=(--prompts 2,4 --prompt_len 8 --new_tokens 8)
    rm=(--sequences 8 --seq_len 32 --batch_sizes 2,4)
    step=(--prompts 2 --n 2 --prompt_len 8 --new_tokens 8 --sandbox_workers 2)
    toy=(--device cpu)
  else
    policy=(); gen=(); rm=(); step=()
  fi
  python3 benchmarks/gpu/policy_throughput.py --shape "$shape" "${toy[@]}" "${policy[@]}" --json "$OUT/policy_$shape.json"
  python3 benchmarks/gpu/policy_throughput.py --shape "$shape" "${toy[@]}" "${policy[@]}" --packing_samples \
    --json "$OUT/policy_packed_$shape.json"
  python3 benchmarks/gpu/generation_throughput.py --shape "$shape" "${toy[@]}" "${gen[@]}" --json "$OUT/generation_$shape.json"
  python3 benchmarks/gpu/rm_scoring.py --shape "$shape" "${toy[@]}" "${rm[@]}" --json "$OUT/rm_$shape.json"
  if [ "$shape" != 1.5b ]; then  # issue 6 asks for the step at the 0.5B shape
    python3 benchmarks/gpu/rl_step.py --shape "$shape" "${toy[@]}" "${step[@]}" --json "$OUT/rl_step_$shape.json"
  fi
done
