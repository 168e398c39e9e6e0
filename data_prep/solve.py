"""AceCoder solver calls: answers to each question, for the oracle filter or for pass-rate samples.

In:  question records ``{id, question, test_cases (or tests), ...}`` (JSONL or Parquet).
Out: the same records with ``inferences`` extended by ``n`` entries
     ``{model_name, completion_id, completion}`` (``pass_rate`` is added by the test-running stage).
     Completions start with the prompt's assistant prefill, so each is the whole answer.

The prompt shows the question in a docstring with its first two tests; the assistant turn is
prefilled with a sentence and an opening python fence (``data_prep/prompts/solve.txt``). Output and
``OUTPUT.failures.jsonl`` are append-only and keyed by id, so a re-run skips finished questions.

    python -m data_prep.solve --input questions.jsonl --output oracle.jsonl \
        --base_url http://localhost:8000/v1 --model Qwen/Qwen2.5-Coder-32B-Instruct
"""
from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from common.options import add_deprecated_spellings
from data_prep.llm_client import add_client_args, backend_from_args, run_chats
from data_prep.prompts import SOLVE, ChatTemplate, load_chat_template
from data_prep.synthesize import StageSummary, check_request_error, load_inputs, open_outputs


def solver_messages(template: ChatTemplate, record: dict) -> list[dict[str, str]]:
    tests = record.get("test_cases") or record.get("tests") or []
    return template.render(question=record["question"].strip(), tests="\n".join(map(str, tests[:2])))


def run_solve(input_path: str | os.PathLike, output_path: str | os.PathLike, backend: Any, n: int = 1,
              temperature: float = 0.0, top_p: float = 1.0, max_tokens: int = 1024,
              prompt_path: str | os.PathLike | None = None, model_name: str | None = None, *,
              concurrency: int = 16, progress: bool = True) -> StageSummary:
    """Ask ``backend`` for ``n`` answers per question not settled by an earlier run.

    Defaults are the oracle's (greedy, one answer, 1024 new tokens); pass-rate samples use n=16,
    temperature=0.7. ``model_name`` defaults to the backend's model.
    """
    template = load_chat_template(prompt_path or SOLVE, required=("question", "tests"))
    records = load_inputs(input_path, required=("question",))
    model = model_name or getattr(backend, "model_name", None) or type(backend).__name__
    summary = StageSummary("solve")
    out, fails, settled = open_outputs(output_path)
    todo = [r for r in records if r["id"] not in settled]
    summary.skipped = len(records) - len(todo)

    def fail(rec: dict, kind: str, reason: str) -> None:
        fails.write({"id": rec["id"], "stage": "solve", "kind": kind, "reason": reason, "model": model})

    try:
        with contextlib.closing(run_chats(backend, todo, lambda r: solver_messages(template, r), n=n,
                                          temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                          concurrency=concurrency, desc="solve", progress=progress)) as results:
            for rec, result, err in results:
                if err is not None:
                    check_request_error(err)
                    summary.request_failed += 1
                    fail(rec, "request", str(err))
                    continue
                summary.add_usage(result.usage, backend)
                if len(result.texts) != n:  # a server ignoring n would skew pass rates silently
                    summary.failed += 1
                    fail(rec, "reply", f"asked for {n} completions, got {len(result.texts)}")
                    continue
                summary.ok += 1
                new = [{"model_name": model, "completion_id": i, "completion": text}
                       for i, text in enumerate(result.texts)]
                out.write({**rec, "inferences": list(rec.get("inferences") or []) + new})
    finally:
        out.close()
        fails.close()
    print(summary, flush=True)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="question records, JSONL or Parquet")
    p.add_argument("--output", required=True, help="records with inferences, JSONL or Parquet (appended to)")
    p.add_argument("--prompt", default=None, help=f"prompt template file (default {SOLVE})")
    p.add_argument("-n", type=int, default=1, help="answers per question")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling top_p")
    p.add_argument("--max_new_tokens", type=int, default=1024, help="most new tokens per answer")
    p.add_argument("--model_name", default=None, help="name recorded in inferences (default: --model)")
    add_client_args(p)
    add_deprecated_spellings(p, {"--top-p": "--top_p", "--max-tokens": "--max_new_tokens",
                                 "--model-name": "--model_name"})


def run_from_args(args: argparse.Namespace) -> StageSummary:
    return run_solve(args.input, args.output, backend_from_args(args), args.n, args.temperature, args.top_p,
                     args.max_new_tokens, args.prompt, args.model_name, concurrency=args.concurrency)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    main()
