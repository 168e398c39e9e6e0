"""The AceCode data pipeline, one subcommand per stage:

  seeds        seed sources -> {id, source, instruction?, program}
  synthesize   seeds -> questions with ~20 asserts (an LLM rewrites each seed)
  solve        questions -> answers in `inferences` (the oracle, or n policy samples)
  filter       oracle answers -> AceCode records with the tests the oracle passes (>= 5), Table 1
  score        sampled answers -> their pass rates over the kept tests
  pairs        scored records -> preference pairs, plus the reward-model trainer's format
  hard-subset  scored records -> the hard questions for RL

Every stage reads --input and appends to --output (JSONL, or Parquet by extension), keyed by id: a
re-run skips finished records, and an interrupted run loses nothing. Bad input records are reported
with file, line and field and skipped; the stage finishes the good ones and exits with status 1.
Exit status 2: the stage could not run (missing file, no sandbox, a bad row before any LLM request).
launch/make_acecode.sh chains all stages.

Options are snake_case, as in every command of the project (``--min_tests``, ``--data_dir``,
``--sandbox_timeout_s``); the kebab-case spellings before them (``--min-tests``, ``--timeout-s``,
``--no-progress``, ...) still work this release, with a warning naming the new one.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from common.options import add_bool_option, add_deprecated, add_deprecated_spellings
from common.io import RecordError
from data_prep import solve, synthesize


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; shows each option's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" not in text and not action.required and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _io_args(p: argparse.ArgumentParser, what_in: str, what_out: str) -> None:
    p.add_argument("--input", required=True, help=what_in)
    p.add_argument("--output", required=True, help=what_out + " (appended to, keyed by id)")


def _progress_args(p: argparse.ArgumentParser) -> None:
    add_bool_option(p, "--progress_bar", True, "show a progress bar (--progress_bar false: none)")
    add_deprecated(p, "--no-progress", "--progress_bar", const=False)


def _seeds(args: argparse.Namespace) -> int:
    from data_prep.seeds import run_seeds

    return run_seeds(args.input, args.output, args.source, limit=args.limit, data_dir=args.data_dir).bad


def _filter(args: argparse.Namespace) -> int:
    from data_prep.execute import run_filter

    summary, _ = run_filter(args.input, args.output, min_tests=args.min_tests, oracle_model=args.oracle_model,
                            oracle_field=args.oracle_field, sandbox=args.sandbox, progress=args.progress_bar,
                            lookahead=args.lookahead * args.sandbox.workers)
    return summary.bad


def _score(args: argparse.Namespace) -> int:
    from data_prep.execute import run_score

    return run_score(args.input, args.output, sandbox=args.sandbox, progress=args.progress_bar,
                     lookahead=args.lookahead * args.sandbox.workers).bad


def _pairs(args: argparse.Namespace) -> int:
    from data_prep.pairs import run_pairs

    return run_pairs(args.input, args.output, args.rm_output).bad


def _hard(args: argparse.Namespace) -> int:
    from data_prep.pairs import run_hard_subset

    return run_hard_subset(args.input, args.output).bad


def _llm(run: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        run(args)
        return 0  # these stages stop before any request on a bad record (exit status 2)
    return call


def build_parser() -> argparse.ArgumentParser:
    from data_prep.common import add_sandbox_args
    from data_prep.execute import ORACLE_FIELDS
    from data_prep.seeds import SOURCES, STACK_LIMIT

    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def stage(name: str, doc: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        line = next(x for x in __doc__.splitlines() if x.strip().startswith(name + " "))
        p = sub.add_parser(name, help=line.strip()[len(name):].strip(), description=doc, formatter_class=_Formatter)
        p.set_defaults(func=fn)
        return p

    from data_prep import seeds as seeds_mod

    p = stage("seeds", seeds_mod.__doc__, _seeds)
    _io_args(p, "seed source: a JSONL/Parquet copy of the dataset, or for --source benchmark a benchmark "
                "name (mbpp, humaneval, ...) or an AceCode file", "seed records")
    p.add_argument("--source", required=True, choices=SOURCES, help="which seed source --input is")
    p.add_argument("--limit", type=int, default=None,
                   help=f"most seeds to keep (None: {STACK_LIMIT} for stack, all for the others; 0: all)")
    p.add_argument("--data_dir", default=None, help="benchmark files for --source benchmark "
                                                   "(None: $ACECODER_DATA_DIR or ../shared/data)")
    add_deprecated(p, "--data-dir", "--data_dir")

    p = stage("synthesize", synthesize.__doc__, _llm(synthesize.run_from_args))
    synthesize.add_arguments(p)
    p = stage("solve", solve.__doc__, _llm(solve.run_from_args))
    solve.add_arguments(p)

    from data_prep import execute

    p = stage("filter", execute.__doc__, _filter)
    _io_args(p, "question records with the oracle's answer (solve output)", "AceCode records")
    p.add_argument("--min_tests", type=int, default=5, help="drop questions keeping fewer tests than this")
    p.add_argument("--oracle_model", default=None,
                   help="model_name of the oracle's inference (None: the first inference)")
    p.add_argument("--oracle_field", default="inferences", choices=ORACLE_FIELDS,
                   help="where the oracle is: an answer in inferences, or a program field of the record")
    add_deprecated_spellings(p, {"--min-tests": "--min_tests", "--oracle-model": "--oracle_model",
                                 "--oracle-field": "--oracle_field"})
    _progress_args(p)
    add_sandbox_args(p)

    p = stage("score", execute.__doc__, _score)
    _io_args(p, "AceCode records with sampled answers (solve -n 16 output)", "scored AceCode records")
    _progress_args(p)
    add_sandbox_args(p)

    from data_prep import pairs as pairs_mod

    p = stage("pairs", pairs_mod.__doc__, _pairs)
    _io_args(p, "scored AceCode records (score output)", "pair records")
    p.add_argument("--rm_output", default=None,
                   help="the {prompt, chosen, rejected} export (None: OUTPUT with .rm.jsonl)")
    add_deprecated(p, "--rm-output", "--rm_output")
    p = stage("hard-subset", pairs_mod.__doc__, _hard)
    _io_args(p, "scored AceCode records (score output)", "the kept records, unchanged")
    return parser


def main(argv: list[str] | None = None) -> int:
    from data_prep.llm_client import LLMError
    from sandbox import SandboxUnavailable

    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "sandbox_workers"):  # filter, score: a bad sandbox option is a usage error, named
        from data_prep.common import sandbox_config

        args.sandbox = sandbox_config(args, parser)
    try:
        bad = args.func(args)
    except (RecordError, FileNotFoundError, IsADirectoryError, SandboxUnavailable, LLMError) as e:
        print(f"error: {args.stage}: {e}", file=sys.stderr, flush=True)
        return 2
    if bad:
        print(f"{args.stage}: finished the good records; {bad} bad record(s) skipped: exit status 1",
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
