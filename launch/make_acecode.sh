#!/usr/bin/env bash
# Builds AceCode data end to end (the AceCoder paper's pipeline): seeds -> synthesize (LLM rewrite) -> oracle answers
# -> filter (Table 1) -> policy samples -> score -> preference pairs + hard subset. Every stage appends
# to its output and skips finished records, so after an interruption run the same command again.
#
#   INPUT=seeds.jsonl OUTPUT_DIR=/data/acecode bash launch/make_acecode.sh
#   ray job submit --working-dir . --runtime-env-json '{"env_vars": {"OUTPUT_DIR": "/shared/acecode",
#       "EVOL_INPUT": "/shared/evol.parquet"}}' -- bash launch/make_acecode.sh
# (On Ray give OUTPUT_DIR and the inputs as absolute paths on storage that outlives the job: a relative
# path lands in the job's temporary copy of the working directory.)
#
# Settings, as environment variables (defaults: the paper's):
#   INPUT              a seeds file {id, source, instruction?, program}; when empty, seeds are made from
#   EVOL_INPUT, OSS_INPUT, STACK_INPUT
#                      local JSONL/Parquet copies of Magicoder-Evol-Instruct-110K, Magicoder-OSS-Instruct-75K
#                      and bigcode/stack-dedup-python-fns (HF column names; empty ones are skipped)
#   OUTPUT_DIR         outputs/acecode
#   BASE_URL, MODEL    the rewriter: https://api.openai.com/v1, gpt-4o-mini (key: $OPENAI_API_KEY)
#   ORACLE_BASE_URL, ORACLE_MODEL   http://localhost:8000/v1, Qwen/Qwen2.5-Coder-32B-Instruct (greedy, 1 answer)
#   POLICY_BASE_URL, POLICY_MODEL   $ORACLE_BASE_URL, Qwen/Qwen2.5-Coder-7B-Instruct
#   N_SAMPLES 16, SAMPLE_TEMPERATURE 0.7, MIN_TESTS 5, WORKERS (sandbox) $(nproc), TIMEOUT_S 5
#   FORMAT             jsonl or parquet, for the final outputs (acecode, pairs, hard subset): jsonl
#   STAGES             the stages to run, in this order: seeds synthesize oracle filter sample score pairs hard-subset
#   SKIP_SETUP=1       do not source launch/setup_env.sh (it installs what is missing, then does nothing)
# Extra arguments go to one stage each, prefixed by its name, e.g.
#   bash launch/make_acecode.sh synthesize:--concurrency=64 score:--sandbox_timeout_s=10 oracle:--offline
# Exit status: 0; 1 when some stage skipped bad records (it finished the good ones; see its messages);
# otherwise the failing stage's status.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ "${SKIP_SETUP:-0}" = 1 ] || source "$ROOT/launch/setup_env.sh"
cd "$ROOT"

ALL_STAGES="seeds synthesize oracle filter sample score pairs hard-subset"
STAGES="${STAGES:-$ALL_STAGES}"
OUT="${OUTPUT_DIR:-outputs/acecode}"
BASE_URL="${BASE_URL:-https://api.openai.com/v1}"
MODEL="${MODEL:-gpt-4o-mini}"
ORACLE_BASE_URL="${ORACLE_BASE_URL:-http://localhost:8000/v1}"
ORACLE_MODEL="${ORACLE_MODEL:-Qwen/Qwen2.5-Coder-32B-Instruct}"
POLICY_BASE_URL="${POLICY_BASE_URL:-$ORACLE_BASE_URL}"
POLICY_MODEL="${POLICY_MODEL:-Qwen/Qwen2.5-Coder-7B-Instruct}"
N_SAMPLES="${N_SAMPLES:-16}"
SAMPLE_TEMPERATURE="${SAMPLE_TEMPERATURE:-0.7}"
MIN_TESTS="${MIN_TESTS:-5}"
WORKERS="${WORKERS:-$(nproc)}"
TIMEOUT_S="${TIMEOUT_S:-5}"
FORMAT="${FORMAT:-jsonl}"
case "$FORMAT" in
  jsonl|parquet) ;;
  *) echo "make_acecode.sh: FORMAT must be jsonl or parquet, not '$FORMAT'" >&2; exit 2;;
esac

declare -A EXTRA=()
for arg in "$@"; do
  stage="${arg%%:*}"
  if [[ "$arg" != *:* || " $ALL_STAGES " != *" $stage "* ]]; then
    echo "make_acecode.sh: extra argument '$arg' must be STAGE:OPTION, STAGE one of: $ALL_STAGES" >&2
    exit 2
  fi
  EXTRA[$stage]+="${arg#*:}"$'\n'
done
for stage in $STAGES; do
  [[ " $ALL_STAGES " == *" $stage "* ]] || { echo "make_acecode.sh: unknown stage '$stage' in STAGES" >&2; exit 2; }
done

BAD=0
run() {  # run NAME SUBCOMMAND ARGS...: one stage, with its extra arguments, if NAME is in STAGES
  local name=$1 rc=0 extra=()
  shift
  [[ " $STAGES " == *" $name "* ]] || return 0
  [ -z "${EXTRA[$name]:-}" ] || mapfile -t extra < <(printf '%s' "${EXTRA[$name]}")
  echo "[make_acecode] $name: python -m data_prep $* ${extra[*]}" >&2
  python -m data_prep "$@" "${extra[@]}" || rc=$?
  if [ "$rc" -eq 1 ]; then
    echo "[make_acecode] $name skipped bad records (listed above); going on" >&2
    BAD=1
  elif [ "$rc" -ne 0 ]; then
    echo "[make_acecode] $name failed with status $rc; fix it and run again (finished work is kept)" >&2
    exit "$rc"
  fi
}

mkdir -p "$OUT"
SEEDS="${INPUT:-}"
if [ -z "$SEEDS" ]; then
  SEEDS="$OUT/seeds.jsonl"
  if [[ " $STAGES " == *" seeds "* && -z "${EVOL_INPUT:-}${OSS_INPUT:-}${STACK_INPUT:-}" ]]; then
    echo "make_acecode.sh: set INPUT (a seeds file) or at least one of EVOL_INPUT, OSS_INPUT, STACK_INPUT" >&2
    exit 2
  fi
  [ -z "${EVOL_INPUT:-}" ] || run seeds seeds --source evol --input "$EVOL_INPUT" --output "$SEEDS"
  [ -z "${OSS_INPUT:-}" ] || run seeds seeds --source oss --input "$OSS_INPUT" --output "$SEEDS"
  [ -z "${STACK_INPUT:-}" ] || run seeds seeds --source stack --input "$STACK_INPUT" --output "$SEEDS"
fi

run synthesize synthesize --input "$SEEDS" --output "$OUT/questions.jsonl" --base_url "$BASE_URL" --model "$MODEL" \
  --temperature 0.7 --max_new_tokens 8192
run oracle solve --input "$OUT/questions.jsonl" --output "$OUT/oracle.jsonl" --base_url "$ORACLE_BASE_URL" \
  --model "$ORACLE_MODEL" -n 1 --temperature 0 --max_new_tokens 1024
run filter filter --input "$OUT/oracle.jsonl" --output "$OUT/filtered.jsonl" --min_tests "$MIN_TESTS" \
  --oracle_model "$ORACLE_MODEL" --sandbox_workers "$WORKERS" --sandbox_timeout_s "$TIMEOUT_S"
run sample solve --input "$OUT/filtered.jsonl" --output "$OUT/samples.jsonl" --base_url "$POLICY_BASE_URL" \
  --model "$POLICY_MODEL" -n "$N_SAMPLES" --temperature "$SAMPLE_TEMPERATURE" --top_p 1.0 --max_new_tokens 1024
run score score --input "$OUT/samples.jsonl" --output "$OUT/acecode.$FORMAT" --sandbox_workers "$WORKERS" \
  --sandbox_timeout_s "$TIMEOUT_S"
run pairs pairs --input "$OUT/acecode.$FORMAT" --output "$OUT/pairs.$FORMAT" --rm_output "$OUT/pairs_rm.$FORMAT"
run hard-subset hard-subset --input "$OUT/acecode.$FORMAT" --output "$OUT/acecode_hard.$FORMAT"

echo "[make_acecode] done: AceCode records $OUT/acecode.$FORMAT, pairs $OUT/pairs.$FORMAT (reward-model" \
     "format: $OUT/pairs_rm.$FORMAT), hard subset $OUT/acecode_hard.$FORMAT" >&2
exit "$BAD"
