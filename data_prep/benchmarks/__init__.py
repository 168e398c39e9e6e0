"""Public code benchmarks as AceCode records: MBPP, sanitized MBPP, HumanEval, HumanEval+ and MBPP+.

Each converter reads the unmodified upstream file (see ``../shared/data/SOURCES.md``) and returns
``AceCodeRecord``s whose ``test_cases`` are standalone statements, run one by one after the program
and the record's ``test_setup``:

- MBPP / sanitized MBPP: the dataset's own asserts (MBPP's challenge tests go to ``challenge_test_cases``).
- HumanEval: ``check(candidate)`` is split with ``ast`` into one assert per ``assert`` statement,
  ``candidate`` renamed to the entry point; a check that cannot be split (loops, random inputs,
  statements using the candidate) becomes the single test ``check(ENTRY)`` with ``check`` in the setup.
- HumanEval+ / MBPP+: one assert per input of the EvalPlus test set (base + plus inputs, deduplicated
  as in the ``*-OriginFmt`` files), mirroring EvalPlus' output oracle: exact ``==``, or for float
  answers (or a task tolerance) the same type and length and ``numpy.allclose(rtol=1e-07, atol)``,
  implemented without numpy in ``_evalplus_check`` (``sandbox/oracles.py``: the sandbox applies it on
  the host, to the strictly encoded answer; a copy goes into ``test_setup``); plus EvalPlus' special
  oracles (see ``PLUS_SPECIAL_ORACLES``).

Where the plus tests differ from running EvalPlus itself: repeated inputs are tested once (as in the
OriginFmt files); EvalPlus' per-input time limits are left to the sandbox (on CPU time in
``data_prep/evalplus_mode.py``'s EvalPlus mode); ``allclose`` does not
broadcast arrays of different shapes (it fails them); the reference function and ``_poly`` get their
own copy of the arguments, never one the answer may have mutated.

Nothing here runs benchmark code; values are read with ``ast`` only.
Command line: ``python -m data_prep.benchmarks --name humanevalplus --output he_plus.jsonl``.

Modules: ``files`` (the upstream files), ``mbpp``, ``humaneval``, ``plus`` (HumanEval+ and MBPP+) and
``literals`` (the plus sets' values); this one holds the registry and the command line.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Callable

from common.io import write_records
from common.schema import AceCodeRecord

from .files import DATA_DIR_ENV, SHA256, data_file, default_data_dir
from .humaneval import load_humaneval, split_check
from .literals import literal, render, same_value
from .mbpp import load_mbpp, load_mbpp_sanitized
from .plus import (_EVALPLUS_CHECK_SRC, _EVALPLUS_DIGIT_DISTANCE_SRC, _EVALPLUS_FOUND_SRC, _EVALPLUS_POLY_SRC,
                   _EVALPLUS_SURFACE_AREA_SRC, MBPP_NOT_NONE, MBPP_SET_EQ, PLUS_SPECIAL_ORACLES, UNCONVERTED,
                   load_humanevalplus, load_mbppplus)

__all__ = ["BENCHMARKS", "DATA_DIR_ENV", "MBPP_NOT_NONE", "MBPP_SET_EQ", "PLUS_SPECIAL_ORACLES", "SHA256",
           "UNCONVERTED", "_EVALPLUS_CHECK_SRC", "_EVALPLUS_DIGIT_DISTANCE_SRC", "_EVALPLUS_FOUND_SRC",
           "_EVALPLUS_POLY_SRC", "_EVALPLUS_SURFACE_AREA_SRC", "convert_benchmark", "data_file",
           "default_data_dir", "literal", "load_benchmark", "load_humaneval", "load_humanevalplus", "load_mbpp",
           "load_mbpp_sanitized", "load_mbppplus", "main", "render", "same_value", "split_check"]

BENCHMARKS: dict[str, Callable[..., list[AceCodeRecord]]] = {
    "mbpp": load_mbpp,
    "mbpp_sanitized": load_mbpp_sanitized,
    "humaneval": load_humaneval,
    "humanevalplus": load_humanevalplus,
    "mbppplus": load_mbppplus,
}


def load_benchmark(name: str, data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """Records of one benchmark: ``mbpp``, ``mbpp_sanitized``, ``humaneval``, ``humanevalplus``, ``mbppplus``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name](data_dir)


def convert_benchmark(name: str, output: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> int:
    """Write a benchmark as AceCode records (JSONL or Parquet, by extension); returns the record count."""
    recs = load_benchmark(name, data_dir)
    write_records(output, [r.to_dict() for r in recs])
    return len(recs)


def main(argv: list[str] | None = None) -> None:
    from common.options import add_deprecated

    p = argparse.ArgumentParser(prog="python -m data_prep.benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, choices=list(BENCHMARKS), help="benchmark to convert")
    p.add_argument("--output", required=True, help="output file, .jsonl or .parquet")
    p.add_argument("--data_dir", default=None,
                   help=f"folder with the upstream files (default: ${DATA_DIR_ENV} or ../shared/data)")
    add_deprecated(p, "--data-dir", "--data_dir")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        n = convert_benchmark(args.name, args.output, args.data_dir)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {n} {args.name} records to {args.output}")
