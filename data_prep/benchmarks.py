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
"""
from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import inspect
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from common.io import write_records
from common.pyparse import parse
from common.schema import AceCodeRecord
from sandbox import oracles

log = logging.getLogger(__name__)

DATA_DIR_ENV = "ACECODER_DATA_DIR"

# sha256 of the upstream files, as listed in ../shared/data/SOURCES.md.
SHA256 = {
    "mbpp.jsonl": "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
    "sanitized-mbpp.json": "7fec016546acaee11dbe14f9f0bb670e59f41919f7b522a59fba34871da78551",
    "HumanEval.jsonl.gz": "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    "HumanEvalPlus.jsonl.gz": "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
    "HumanEvalPlus-OriginFmt.jsonl.gz": "daa7661c8189924068069b0872a440b491edb60f8bdf431d5957adc88d18bae5",
    "MbppPlus.jsonl.gz": "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
    "MbppPlus-OriginFmt.jsonl.gz": "7a5aec547b134fa297ee6c45f829298aa3f58de02547b8d8a5c3d85d9cb10efc",
}

# EvalPlus' special oracles (evalplus/eval/__init__.py and _special_oracle.py), keyed by entry point.
MBPP_SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
               "larg_nnum", "intersection_array", "find_dissimilar", "Diff"}
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}
PLUS_SPECIAL_ORACLES = {
    "mbpp: " + ", ".join(sorted(MBPP_SET_EQ)): "compare set(output) with set(expected)",
    "mbpp: " + ", ".join(sorted(MBPP_NOT_NONE)):
        "a bool answer must equal the expected bool, any other answer must be non-None iff expected is True "
        "(the OriginFmt files' helper for these tasks never asserts; EvalPlus' evaluator does, and we follow it)",
    "mbpp: surface_Area (Mbpp/581)": "also accept round() of the area computed from the perpendicular height",
    "mbpp: digit_distance_nums (Mbpp/558)": "also accept the digit distance of the zero-padded numbers",
    "humaneval: find_zero (HumanEval/32)":
        "abs(_evalplus_poly(xs, answer)) <= atol (the dataset's _poly, applied on the host); the OriginFmt check() calls _poly(*answer, xs), which raises for every "
        "answer, so we follow EvalPlus' evaluator",
}
# Tasks left out of the plus sets because their tests could not be converted faithfully (id: reason).
UNCONVERTED: dict[str, str] = {}

# The oracles' source, written into the records' setup so that a record runs on its own anywhere; the
# sandbox applies the same functions on the host (sandbox/oracles.py), only the answer runs inside.
_EVALPLUS_CHECK_SRC = "\n\n".join(inspect.getsource(f) for f in (
    oracles._evalplus_is_floats, oracles._evalplus_allclose, oracles._evalplus_check))
_EVALPLUS_FOUND_SRC = inspect.getsource(oracles._evalplus_found)
_EVALPLUS_POLY_SRC = inspect.getsource(oracles._evalplus_poly)
_EVALPLUS_SURFACE_AREA_SRC = inspect.getsource(oracles._evalplus_surface_area)
_EVALPLUS_DIGIT_DISTANCE_SRC = inspect.getsource(oracles._evalplus_digit_distance)


# ----------------------------------------------------------------------------- files

def default_data_dir() -> Path:
    """``$ACECODER_DATA_DIR`` if set, else ``../shared/data`` relative to the project root."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def data_file(filename: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of an upstream benchmark file; warns (does not fail) when its sha256 differs from SOURCES.md."""
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    path = d / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"benchmark file {path} not found; pass data_dir=... (--data_dir) or set {DATA_DIR_ENV} "
            f"to the folder holding {filename} (see shared/data/SOURCES.md)")
    want = SHA256.get(filename)
    if want is not None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != want:
            warnings.warn(f"{path}: sha256 {h.hexdigest()} differs from the one in SOURCES.md ({want}); "
                          f"the file is not the upstream revision the converters were checked against",
                          stacklevel=2)
    return path


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _nl(s: str) -> str:
    return s.replace("\r\n", "\n")


def _parse(src: str) -> ast.Module:
    """ast.parse without the warnings old benchmark code raises (invalid escapes such as '\\d')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        return parse(src)


# ----------------------------------------------------------------------------- MBPP

def _entry_point(code: str, tests: list[str]) -> str | None:
    """The function the tests call: the first called name that the program defines at top level."""
    try:
        defined = {n.name for n in _parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    except SyntaxError:
        defined = set()
    called: list[str] = []
    for t in tests:
        for node in ast.walk(_parse(t)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in called:
                called.append(node.func.id)
    for name in called:
        if name in defined:
            return name
    return None


def load_mbpp(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """MBPP, full (974 tasks): ``text``, ``code``, ``test_list``; ``challenge_test_list`` kept apart."""
    recs = []
    for row in _read_jsonl(data_file("mbpp.jsonl", data_dir)):
        code = _nl(row["code"])
        tests = [_nl(t).strip() for t in row["test_list"]]
        challenge = [_nl(t).strip() for t in row["challenge_test_list"]]
        setup = _nl(row["test_setup_code"]).strip()
        recs.append(AceCodeRecord(
            id=f"mbpp_{row['task_id']}", source="mbpp", question=_nl(row["text"]).strip(),
            test_cases=tests, challenge_test_cases=challenge or None, test_setup=setup or None,
            entry_point=_entry_point(code, tests), canonical_solution=code))
    return recs


def load_mbpp_sanitized(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """Sanitized MBPP (427 tasks): ``prompt``, ``code``, ``test_list``, ``test_imports`` as setup."""
    with open(data_file("sanitized-mbpp.json", data_dir), encoding="utf-8") as f:
        rows = json.load(f)
    recs = []
    for row in rows:
        code = _nl(row["code"])
        tests = [_nl(t).strip() for t in row["test_list"]]
        setup = "\n".join(row["test_imports"])
        recs.append(AceCodeRecord(
            id=f"mbpp_sanitized_{row['task_id']}", source="mbpp_sanitized", question=_nl(row["prompt"]).strip(),
            test_cases=tests, test_setup=setup or None, entry_point=_entry_point(code, tests),
            canonical_solution=code))
    return recs


# ----------------------------------------------------------------------------- HumanEval

class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            return ast.copy_location(ast.Name(id=self.new, ctx=node.ctx), node)
        return node


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _assigned(node: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} | {
        (a.asname or a.name).split(".")[0] for a in getattr(node, "names", [])
        if isinstance(node, (ast.Import, ast.ImportFrom))}


def split_check(test_src: str, entry_point: str) -> tuple[str | None, list[str]] | None:
    """Split HumanEval's ``def check(candidate)`` into (setup, one assert per test), or None.

    Asserts that mention the candidate become tests with ``candidate`` renamed to ``entry_point``;
    constant asserts (``assert True``) are dropped; imports and assignments that do not involve the
    candidate move to the setup, after the module-level code (minus the unused ``METADATA``). Any
    other statement (loops, statements using the candidate, ...) makes the check unsplittable: None.
    """
    module = _parse(test_src)
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or len(checks[0].args.args) != 1:
        return None
    check = checks[0]
    cand = check.args.args[0].arg
    setup_stmts: list[ast.stmt] = []
    for node in module.body:
        if node is check:
            continue
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["METADATA"]
                and "METADATA" not in _names(check)):
            continue
        setup_stmts.append(node)
    tests: list[str] = []
    read_by_tests: set[str] = set()
    for stmt in check.body:
        uses_cand = cand in _names(stmt)
        if isinstance(stmt, ast.Assert):
            if not uses_cand:
                if isinstance(stmt.test, ast.Constant) and stmt.test.value:
                    continue  # assert True: tests nothing
                return None
            renamed = _Rename(cand, entry_point).visit(stmt)
            tests.append(ast.unparse(ast.fix_missing_locations(renamed)))
            read_by_tests |= _names(stmt)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Name, ast.Constant)) and not uses_cand:
            continue  # a bare name or docstring: no effect
        elif (isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign))
              and not uses_cand and not (_assigned(stmt) & read_by_tests)):
            setup_stmts.append(stmt)
        else:
            return None
    if not tests:
        return None
    setup = "\n".join(ast.unparse(s) for s in setup_stmts).strip()
    return (setup or None), tests


def load_humaneval(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """HumanEval (164 tasks). ``extra['test_conversion']`` says ``split`` or ``check_fallback``."""
    recs = []
    for row in _read_jsonl(data_file("HumanEval.jsonl.gz", data_dir)):
        ep = row["entry_point"]
        split = split_check(row["test"], ep)
        if split is not None:
            setup, tests = split
            how = "split"
        else:
            setup, tests, how = row["test"].strip(), [f"check({ep})"], "check_fallback"
        recs.append(AceCodeRecord(
            id=f"humaneval_{row['task_id'].split('/')[1]}", source="humaneval", question=row["prompt"],
            test_cases=tests, test_setup=setup, entry_point=ep,
            canonical_solution=row["prompt"] + row["canonical_solution"], extra={"test_conversion": how}))
    n_fallback = sum(r.extra["test_conversion"] == "check_fallback" for r in recs)
    log.info("humaneval: %d tasks, %d split into asserts, %d fall back to check(ENTRY)",
             len(recs), len(recs) - n_fallback, n_fallback)
    return recs


# ----------------------------------------------------------------------------- literals

class _Unconvertible(ValueError):
    pass


_SPECIAL_FLOATS = {"inf": math.inf, "nan": math.nan}


class _Specials(ast.NodeTransformer):
    """Turn ``inf``, ``nan``, ``float('inf')`` and ``complex(a, b)`` into constants for literal_eval."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _SPECIAL_FLOATS:
            return ast.Constant(_SPECIAL_FLOATS[node.id])
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        fn = node.func.id if isinstance(node.func, ast.Name) else None
        args = node.args
        if node.keywords or not all(isinstance(a, ast.Constant) for a in args):
            return node
        if fn == "float" and len(args) == 1 and isinstance(args[0].value, str):
            return ast.Constant(float(args[0].value))
        if fn == "complex" and len(args) == 2 and all(type(a.value) in (int, float) for a in args):
            return ast.Constant(complex(args[0].value, args[1].value))
        return node


def literal(node: ast.AST | str) -> Any:
    """``ast.literal_eval`` that also reads ``inf``, ``nan``, ``float('inf')`` and ``complex(a, b)``."""
    if isinstance(node, str):
        node = parse(node, mode="eval").body
    try:
        return ast.literal_eval(node)
    except ValueError:  # a name or call: rewrite the special values, then try again
        return ast.literal_eval(_Specials().visit(node))


def render(v: Any) -> str:
    """Python source for a literal value (``float('inf')`` where repr would give a bare name)."""
    if v is None or isinstance(v, (bool, int, str, bytes)):
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "float('-inf')"
        return repr(v)
    if isinstance(v, complex):
        if math.isfinite(v.real) and math.isfinite(v.imag):
            return repr(v)
        return f"complex({render(v.real)}, {render(v.imag)})"
    if isinstance(v, list):
        return "[" + ", ".join(render(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(render(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, set):
        return "{" + ", ".join(render(x) for x in v) + "}" if v else "set()"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{render(k)}: {render(x)}" for k, x in v.items()) + "}"
    raise _Unconvertible(f"cannot write a {type(v).__name__} as a literal")


def same_value(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return same_value(a.real, b.real) and same_value(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def _render_checked(v: Any) -> str:
    """``render(v)``, checked to read back as the same value. Text equal to ``repr(v)`` of these literal
    types reads back by Python's repr guarantee; other text (inf, nan, ...) is parsed back and compared."""
    text = render(v)
    if text != repr(v) and not same_value(literal(text), v):
        raise _Unconvertible(f"value does not survive a write/read round trip: {text[:80]}")
    return text


# ----------------------------------------------------------------------------- HumanEval+ / MBPP+

def _is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(i, float) for i in x)


def _parse_origin_test(test_src: str, call_name: str) -> dict:
    """Read an EvalPlus OriginFmt test: inputs, results, the oracle used in its loop, helper code."""
    module = _parse(test_src)
    body = list(module.body)
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            body.remove(node)
            body.extend(node.body)
    out: dict[str, Any] = {"results": None, "helpers": [], "variant": "plain"}
    loops = []
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("inputs", "results"):
            out[node.targets[0].id] = literal(node.value)
        elif isinstance(node, ast.For):
            loops.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == "assertion":
            src = ast.unparse(node)
            out["variant"] = "set" if "set(out)" in src else "not_none" if "is not None" in src else "plain"
        elif isinstance(node, ast.FunctionDef) and node.name == "is_floats":
            pass
        elif isinstance(node, ast.Import) and [a.name for a in node.names] == ["numpy"]:
            pass
        elif isinstance(node, ast.ImportFrom) and node.module == "math" and [a.name for a in node.names] == ["inf"]:
            pass
        else:
            out["helpers"].append(ast.get_source_segment(test_src, node) or ast.unparse(node))
    if "inputs" not in out or len(loops) != 1 or len(loops[0].body) != 1:
        raise _Unconvertible("test is not one loop over `inputs`")
    stmt = loops[0].body[0]
    src = ast.unparse(stmt)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and ast.unparse(stmt.value.func) == "assertion":
        got, exp, atol = stmt.value.args
        if ast.unparse(got) != f"{call_name}(*inp)" or not isinstance(atol, ast.Constant):
            raise _Unconvertible(f"unexpected check {src!r}")
        out["atol"] = atol.value
        if ast.unparse(exp) == "exp":
            out["oracle"] = "results"
        elif ast.unparse(exp) == "ref_func(*inp)":
            out["oracle"] = "ref_func"
        else:
            raise _Unconvertible(f"unexpected expected value in {src!r}")
    elif src == f"assert _poly(*{call_name}(*inp), inp) <= 0.0001":
        out["oracle"], out["atol"] = "poly", 0.0001
    else:
        raise _Unconvertible(f"unexpected check {src!r}")
    if out["oracle"] == "results" and (out["results"] is None or len(out["results"]) != len(out["inputs"])):
        raise _Unconvertible("`results` missing or not one per input")
    return out


def _special_oracle(dataset: str, ep: str) -> str:
    """EvalPlus' oracle for a task, by entry point as EvalPlus selects it."""
    if dataset != "mbpp":
        return "plain"
    if ep in MBPP_SET_EQ:
        return "set"
    if ep in MBPP_NOT_NONE:
        return "not_none"
    return {"surface_Area": "surface_area", "digit_distance_nums": "digit_distance"}.get(ep, "plain")


def _plus_tests(ep: str, parsed: dict, atol: float, dataset: str) -> tuple[list[str], list[str]]:
    """(tests, setup parts) for one EvalPlus task."""
    oracle = _special_oracle(dataset, ep)
    origin_variant = {"set": "set", "not_none": "not_none"}.get(oracle, "plain")
    if dataset == "mbpp" and parsed["variant"] != origin_variant:
        raise _Unconvertible(f"OriginFmt compares with {parsed['variant']!r} but EvalPlus uses {oracle!r} for {ep}")
    setup: list[str] = list(parsed["helpers"]) if parsed["oracle"] in ("ref_func", "poly") else []
    tests: list[str] = []
    for i, inp in enumerate(parsed["inputs"]):
        if not isinstance(inp, (list, tuple)):
            raise _Unconvertible(f"input {i} is not an argument list")
        args = ", ".join(_render_checked(a) for a in inp)
        call = f"{ep}({args})"
        if parsed["oracle"] == "poly":  # HumanEval/32: the answer must be a root of the polynomial
            tests.append(f"assert abs(_evalplus_poly({args}, {call})) <= {atol!r}")
            continue
        if parsed["oracle"] == "ref_func":  # expected values computed by the dataset's reference function
            tests.append(f"assert _evalplus_check({call}, ref_func({args}), {atol!r})")
            continue
        exp = parsed["results"][i]
        exp_src = _render_checked(exp)
        tolerant = atol != 0 or _is_floats(exp)  # EvalPlus then accepts allclose answers
        if oracle not in ("plain", "set") and tolerant:
            raise _Unconvertible(f"special oracle {oracle!r} combined with a float tolerance")
        if oracle == "set":
            tests.append(f"assert _evalplus_check({call}, {exp_src}, {atol!r}, as_sets=True)" if tolerant
                         else f"assert set({call}) == set({exp_src})")
        elif oracle == "not_none":
            tests.append(f"assert _evalplus_found({call}) == {exp_src}")
        elif oracle == "surface_area":
            tests.append(f"assert {call} in ({exp_src}, _evalplus_surface_area({args}))")
        elif oracle == "digit_distance":
            tests.append(f"assert {call} in ({exp_src}, _evalplus_digit_distance({args}))")
        elif tolerant:
            tests.append(f"assert _evalplus_check({call}, {exp_src}, {atol!r})")
        else:
            tests.append(f"assert {call} == {exp_src}")
    helpers = {"_evalplus_check(": _EVALPLUS_CHECK_SRC, "_evalplus_found(": _EVALPLUS_FOUND_SRC,
               "_evalplus_poly(": _EVALPLUS_POLY_SRC,
               "_evalplus_surface_area(": _EVALPLUS_SURFACE_AREA_SRC,
               "_evalplus_digit_distance(": _EVALPLUS_DIGIT_DISTANCE_SRC}
    setup += [src for name, src in helpers.items() if any(name in t for t in tests)]
    return tests, setup


def _load_plus(dataset: str, data_dir: str | os.PathLike | None) -> list[AceCodeRecord]:
    if dataset == "humaneval":
        base_file, origin_file, prefix = "HumanEvalPlus.jsonl.gz", "HumanEvalPlus-OriginFmt.jsonl.gz", "humanevalplus"
    else:
        base_file, origin_file, prefix = "MbppPlus.jsonl.gz", "MbppPlus-OriginFmt.jsonl.gz", "mbppplus"
    base = _read_jsonl(data_file(base_file, data_dir))
    origin = {str(r["task_id"]).split("/")[-1]: r for r in _read_jsonl(data_file(origin_file, data_dir))}
    recs = []
    for row in base:
        num = row["task_id"].split("/")[1]
        rid = f"{prefix}_{num}"
        if row["task_id"] in UNCONVERTED:
            continue
        ep = row["entry_point"]
        o = origin.get(num)
        if o is None:
            raise ValueError(f"{origin_file}: no task {row['task_id']} (it is in {base_file})")
        try:
            parsed = _parse_origin_test(o["test"], "candidate" if dataset == "humaneval" else ep)
            if parsed["oracle"] != "poly" and parsed["atol"] != row["atol"]:
                raise _Unconvertible(f"atol {parsed['atol']} in the test but {row['atol']} in {base_file}")
            tests, setup = _plus_tests(ep, parsed, row["atol"], dataset)
        except (_Unconvertible, ValueError, SyntaxError) as e:
            raise ValueError(f"{origin_file}: {row['task_id']}: {e}; add it to UNCONVERTED with the reason") from e
        if dataset == "humaneval":
            question, program = row["prompt"], row["prompt"] + row["canonical_solution"]
        else:
            question, program = o["prompt"].strip(), row["canonical_solution"].strip("\n") + "\n"
        recs.append(AceCodeRecord(
            id=rid, source=prefix, question=question, test_cases=tests,
            test_setup="\n\n".join(s.strip() for s in setup) + "\n" if setup else None,
            entry_point=ep, canonical_solution=program))
    log.info("%s: %d tasks, %d tests", prefix, len(recs), sum(len(r.test_cases) for r in recs))
    return recs


def load_humanevalplus(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """HumanEval+ v0.1.10 (164 tasks): one test per distinct base or plus input."""
    return _load_plus("humaneval", data_dir)


def load_mbppplus(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """MBPP+ v0.2.0 (378 tasks): one test per distinct base or plus input."""
    return _load_plus("mbpp", data_dir)


# ----------------------------------------------------------------------------- entry points

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


if __name__ == "__main__":
    main()
