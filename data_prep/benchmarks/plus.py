"""HumanEval+ and MBPP+: one assert per input of the EvalPlus test set, with EvalPlus' output oracle."""
from __future__ import annotations

import ast
import inspect
import json
import logging
import os
import textwrap
from typing import Any

from common.schema import AceCodeRecord
from sandbox import oracles

from .files import _parse, read_jsonl, data_file
from .literals import _render_checked, _Unconvertible, literal

log = logging.getLogger(__name__)

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
        "abs(_evalplus_poly(xs, answer)) <= atol (the dataset's _poly, applied on the host); the OriginFmt "
        "check() calls _poly(*answer, xs), which raises for every answer, so we follow EvalPlus' evaluator",
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


def _isolated_reference(helpers: list[str]) -> str:
    """The reference solution's definitions in a function scope of their own, only ``ref_func`` bound
    globally. The setup runs after the program in the same globals, so a reference helper named like
    one of the program's (Mbpp/630's ``adjac``) would replace the program's and pass a wrong program;
    EvalPlus runs its reference in another process."""
    body = textwrap.indent("\n\n".join(helpers), "    ")
    return f"def _evalplus_reference():\n{body}\n    return ref_func\n\n\nref_func = _evalplus_reference()\n" \
           "del _evalplus_reference\n"


def _plus_tests(ep: str, parsed: dict, atol: float, dataset: str, n_base: int) -> tuple[list[str], list[str]]:
    """(tests, setup parts) for one EvalPlus task; the first ``n_base`` inputs are its base inputs.

    EvalPlus' evaluator (``unsafe_execute``) sets ``atol = 1e-6`` for the rest of a run at the first
    expected value that is floats, so later inputs of the same run (base, or plus) accept allclose answers
    even when their own expected value is not all floats (HumanEval/42: ``[-2.4, -1, 0.5, ...]``); the
    dataset's own OriginFmt test decides each input alone. The tests follow the evaluator."""
    oracle = _special_oracle(dataset, ep)
    origin_variant = {"set": "set", "not_none": "not_none"}.get(oracle, "plain")
    if dataset == "mbpp" and parsed["variant"] != origin_variant:
        raise _Unconvertible(f"OriginFmt compares with {parsed['variant']!r} but EvalPlus uses {oracle!r} for {ep}")
    setup: list[str] = ([_isolated_reference(parsed["helpers"])] if parsed["oracle"] == "ref_func"
                        else list(parsed["helpers"]) if parsed["oracle"] == "poly" else [])
    tests: list[str] = []
    sticky = False  # EvalPlus' atol has become 1e-6 in this run (see above)
    for i, inp in enumerate(parsed["inputs"]):
        if i == n_base:
            sticky = False  # EvalPlus runs the plus inputs apart from the base ones
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
        sticky = sticky or (atol == 0 and _is_floats(exp))
        if oracle in ("plain", "set") and sticky and not tolerant:
            tolerant, atol_i = True, 1e-06
        else:
            atol_i = atol
        if oracle == "set":
            tests.append(f"assert _evalplus_check({call}, {exp_src}, {atol_i!r}, as_sets=True)" if tolerant
                         else f"assert set({call}) == set({exp_src})")
        elif oracle == "not_none":
            tests.append(f"assert _evalplus_found({call}) == {exp_src}")
        elif oracle == "surface_area":
            tests.append(f"assert {call} in ({exp_src}, _evalplus_surface_area({args}))")
        elif oracle == "digit_distance":
            tests.append(f"assert {call} in ({exp_src}, _evalplus_digit_distance({args}))")
        elif tolerant:
            tests.append(f"assert _evalplus_check({call}, {exp_src}, {atol_i!r})")
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
    base = read_jsonl(data_file(base_file, data_dir))
    origin = {str(r["task_id"]).split("/")[-1]: r for r in read_jsonl(data_file(origin_file, data_dir))}
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
            n_base = len(dict.fromkeys(json.dumps(x) for x in row.get("base_input", parsed["inputs"])))
            tests, setup = _plus_tests(ep, parsed, row["atol"], dataset, n_base)
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
