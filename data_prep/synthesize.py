"""AceCoder step 1: an LLM rewrites each seed program into a LeetCode-style question plus ~20 asserts.

In:  seed records ``{id, source, instruction?, program}`` (JSONL or Parquet).
Out: ``{id, source, question, test_cases, program, synth: {model, prompt_tokens, completion_tokens,
     tests_dropped, repaired, finish_reason}}``, one per seed whose reply yields a question and at
     least one valid test. Every other seed lands in ``OUTPUT.failures.jsonl`` with the reason.

Both files are append-only and keyed by id: a re-run skips finished seeds and seeds whose reply
was unusable (kind "reply"), and retries seeds whose request failed (kind "request"). Delete the
failures file to retry everything, e.g. after changing the prompt.

    python -m data_prep.synthesize --input seeds.jsonl --output synth.jsonl \
        --base_url https://api.openai.com/v1 --model gpt-4o-mini
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from common.options import add_deprecated_spellings
from common.io import AppendWriter, RecordError, iter_records
from common.pyparse import parse
from data_prep.llm_client import LLMError, Usage, add_client_args, backend_from_args, run_chats
from data_prep.prompts import SYNTHESIZE, load_chat_template


class ReplyError(ValueError):
    """A reply that yields no usable question and tests; the message is the recorded reason."""


# ---- shared by the LLM stages ---------------------------------------------------------------

@dataclass
class StageSummary:
    stage: str
    ok: int = 0
    failed: int = 0  # unusable replies: recorded, not retried
    request_failed: int = 0  # requests that failed for good: recorded, retried on re-run
    skipped: int = 0  # settled by an earlier run
    tests_kept: int = 0
    tests_dropped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add_usage(self, usage: Usage, backend: Any) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        if hasattr(backend, "cost"):
            self.cost += backend.cost(usage)

    def __str__(self) -> str:
        tests = (f"tests kept {self.tests_kept}, dropped {self.tests_dropped}; "
                 if self.tests_kept or self.tests_dropped else "")
        return (f"{self.stage}: {self.ok} ok, {self.failed} bad replies, {self.request_failed} failed "
                f"requests, {self.skipped} skipped (done before); {tests}tokens {self.prompt_tokens} "
                f"prompt + {self.completion_tokens} completion; cost {self.cost:.4f}")


def failures_path(output_path: str | os.PathLike) -> str:
    """``out.jsonl`` -> ``out.failures.jsonl`` (likewise for .parquet, .pq, .jsonl.gz)."""
    stem = re.sub(r"\.(jsonl|jsonl\.gz|json|parquet|pq)$", "", str(output_path))
    return stem + ".failures.jsonl"


def open_outputs(output_path: str | os.PathLike) -> tuple[AppendWriter, AppendWriter, set]:
    """Writers for the output and its failures, and the ids a re-run must not ask about again."""
    out, fails = AppendWriter(str(output_path)), AppendWriter(failures_path(output_path))
    settled = set(out.done)
    for _, rec in iter_records(fails.journal):
        if rec.get("kind") != "request":
            settled.add(rec.get("id"))
    return out, fails, settled


def load_inputs(path: str | os.PathLike, required: tuple[str, ...]) -> list[dict]:
    """All input records, checked up front so a bad row stops the stage before any request."""
    records, seen = [], set()
    for line, rec in iter_records(path):
        if not isinstance(rec.get("id"), (str, int)) or rec["id"] == "":
            raise RecordError(path, line, "id", "missing; every record needs a string or integer id")
        for name in required:
            if not isinstance(rec.get(name), str) or not rec[name].strip():
                raise RecordError(path, line, name, "missing or empty; expected a non-empty string")
        if rec["id"] in seen:
            raise RecordError(path, line, "id", f"duplicate id {rec['id']!r}; outputs are keyed by id")
        seen.add(rec["id"])
        records.append(rec)
    return records


def check_request_error(err: BaseException) -> None:
    """Re-raise what is not a per-request failure: bugs, and errors every request would hit."""
    if not isinstance(err, LLMError) or err.fatal:
        raise err


# ---- reading a rewrite reply ----------------------------------------------------------------

_OBJECT_START = re.compile(r'\{\s*"')
_CLOSING_FENCE = re.compile(r"\s*```\s*$")
_UNDECODABLE = (ValueError, RecursionError)  # json gives up on deep nesting with RecursionError


def repair_truncated_json(text: str) -> Any:
    """Parse JSON cut off mid-way: close the open brackets, after cutting back to the last complete
    element when needed (an open string is an incomplete element: a truncated last test is dropped).
    Returns None when the text is not a truncated object (its brackets close, or mismatch).

    The open brackets are a linked list (innermost first), so remembering them at each cut costs
    O(1): a reply that repeats "[" thousands of times stays linear in time and memory."""
    stack: tuple | None = None  # (bracket, enclosing stack) or None
    cuts: deque[tuple[int, tuple]] = deque(maxlen=50)  # the last 50 (where to cut, brackets open there)
    in_str = esc = False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            stack = (ch, stack)
            cuts.append((i + 1, stack))
        elif ch in "}]":
            if stack is None or stack[0] != ("{" if ch == "}" else "["):
                return None  # mismatched brackets: malformed
            stack = stack[1]
            if stack is None:
                return None  # the object closed yet did not parse: malformed, not truncated
        elif ch == "," and stack is not None:
            cuts.append((i, stack))
    if stack is None:
        return None

    def closed(prefix: str, brackets: tuple | None) -> str:
        closers = []
        while brackets is not None:
            closers.append("}" if brackets[0] == "{" else "]")
            brackets = brackets[1]
        return prefix + "".join(closers)

    candidates = [closed(text, stack)]  # cut between tokens: keep it all (fails inside a string)
    candidates += [closed(text[:pos], brackets) for pos, brackets in reversed(cuts)]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except _UNDECODABLE:
            continue
    return None


def _is_answer(obj: dict) -> bool:
    return "question" in obj


def extract_json_object(text: str) -> tuple[dict, bool]:
    """The JSON object in a reply, tolerating code fences, prose around it and truncation.

    The answer is the first complete object with a "question" key; else the first object that does
    not decode, repaired as a truncation, when it has one (a cut-off answer can hold complete nested
    objects, or follow an example object); else the first object found, for the error message.
    Returns (object, repaired); raises ReplyError."""
    starts = [m.start() for m in _OBJECT_START.finditer(text)]
    if not starts:
        raise ReplyError("no JSON object in the reply")
    decoder = json.JSONDecoder()
    found: list[tuple[int, dict, bool]] = []  # (start, object, repaired)
    cut_off: int | None = None
    for start in starts:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except _UNDECODABLE:
            if cut_off is None:
                cut_off = start  # the first object cut off (or malformed): its repair may be the answer
            continue
        if isinstance(obj, dict):
            if _is_answer(obj):
                return obj, False
            found.append((start, obj, False))
    if cut_off is not None:
        obj = repair_truncated_json(_CLOSING_FENCE.sub("", text[cut_off:]))
        if isinstance(obj, dict):
            if _is_answer(obj):
                return obj, True
            found.append((cut_off, obj, True))
    if not found:
        raise ReplyError("malformed JSON that is not a repairable truncation")
    _, obj, repaired = min(found, key=lambda f: f[0])
    return obj, repaired


def clean_tests(tests: list) -> tuple[list[str], int]:
    """Keep tests that are one ``assert`` statement each, parse, and are not repeats."""
    kept: list[str] = []
    for t in tests:
        t = t.strip() if isinstance(t, str) else ""
        if not t.startswith("assert") or t in kept:
            continue
        try:
            tree = parse(t)
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # MemoryError: too deeply nested
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
            kept.append(t)
    return kept, len(tests) - len(kept)


def parse_synth_reply(text: str) -> tuple[str, list[str], int, bool]:
    """(question, kept tests, number of tests dropped, repaired) from a rewrite reply."""
    obj, repaired = extract_json_object(text)
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ReplyError("no 'question' string in the reply" + (" (cut off before it ended)" if repaired else ""))
    tests = obj.get("tests", obj.get("test_cases"))
    if not isinstance(tests, list):
        raise ReplyError("no 'tests' list in the reply")
    kept, dropped = clean_tests(tests)
    if not kept:
        raise ReplyError(f"no valid tests ({dropped} dropped)")
    return question.strip(), kept, dropped, repaired


# ---- the stage ------------------------------------------------------------------------------

def run_synthesize(input_path: str | os.PathLike, output_path: str | os.PathLike, backend: Any,
                   prompt_path: str | os.PathLike | None = None, *, concurrency: int = 16,
                   temperature: float = 0.7, top_p: float = 1.0, max_tokens: int = 8192,
                   model_name: str | None = None, progress: bool = True) -> StageSummary:
    """Rewrite every seed not settled by an earlier run; returns (and prints) the summary.

    ``backend`` is a ``ChatClient`` (configure it with ``json_mode=True`` as the paper did) or any
    ``ChatBackend``. The sampling defaults are the paper's (gpt-4o-mini, T=0.7, 8192 tokens).
    """
    template = load_chat_template(prompt_path or SYNTHESIZE, required=("program",))
    seeds = load_inputs(input_path, required=("program",))
    model = model_name or getattr(backend, "model_name", None) or type(backend).__name__
    summary = StageSummary("synthesize")
    out, fails, settled = open_outputs(output_path)
    todo = [s for s in seeds if s["id"] not in settled]
    summary.skipped = len(seeds) - len(todo)

    def messages(seed: dict) -> list[dict[str, str]]:
        return template.render(program=seed["program"], instruction=seed.get("instruction") or "(not given)")

    def fail(seed: dict, kind: str, reason: str, reply: str | None = None, meta: dict | None = None) -> None:
        fails.write({"id": seed["id"], "source": seed.get("source"), "stage": "synthesize", "kind": kind,
                     "reason": reason, "reply": reply, "synth": meta})

    try:
        with contextlib.closing(run_chats(backend, todo, messages, n=1, temperature=temperature, top_p=top_p,
                                          max_tokens=max_tokens, concurrency=concurrency,
                                          desc="synthesize", progress=progress)) as results:
            for seed, result, err in results:
                if err is not None:
                    check_request_error(err)
                    summary.request_failed += 1
                    fail(seed, "request", str(err))
                    continue
                summary.add_usage(result.usage, backend)
                meta = {"model": model, "prompt_tokens": result.usage.prompt_tokens,
                        "completion_tokens": result.usage.completion_tokens,
                        "finish_reason": result.finish_reasons[0] if result.finish_reasons else None}
                reply = result.texts[0] if result.texts else ""
                try:
                    question, tests, dropped, repaired = parse_synth_reply(reply)
                except ReplyError as e:
                    summary.failed += 1
                    fail(seed, "reply", str(e), reply, meta)
                    continue
                summary.ok += 1
                summary.tests_kept += len(tests)
                summary.tests_dropped += dropped
                out.write({"id": seed["id"], "source": seed.get("source"), "question": question,
                           "test_cases": tests, "program": seed["program"],
                           "synth": {**meta, "tests_dropped": dropped, "repaired": repaired}})
    finally:
        out.close()
        fails.close()
    print(summary, flush=True)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="seed records, JSONL or Parquet")
    p.add_argument("--output", required=True, help="question records, JSONL or Parquet (appended to)")
    p.add_argument("--prompt", default=None, help=f"prompt template file (default {SYNTHESIZE})")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling top_p")
    p.add_argument("--max_new_tokens", type=int, default=8192, help="most new tokens per reply")
    add_client_args(p)
    add_deprecated_spellings(p, {"--top-p": "--top_p", "--max-tokens": "--max_new_tokens"})


def run_from_args(args: argparse.Namespace) -> StageSummary:
    return run_synthesize(args.input, args.output, backend_from_args(args, json_mode=True), args.prompt,
                          concurrency=args.concurrency, temperature=args.temperature, top_p=args.top_p,
                          max_tokens=args.max_new_tokens)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    main()
