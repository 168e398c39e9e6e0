"""A scripted "LLM" for end-to-end pipeline runs on MBPP, served by FakeOpenAIServer.

- rewrite (synthesize): the seed program is looked up among MBPP's canonical solutions; the reply is
  MBPP's question and tests: the task's 3 tests, its challenge tests, and one wrong test
  (``assert not (TEST0)``) that the oracle fails. For task numbers ending in 7 tests 1 and 2 are
  negated too, so the oracle keeps fewer than 3 tests and the filter drops the question.
- solve, model ``oracle``: the canonical solution.
- solve, other models: ``n`` of the variants in ``VARIANTS`` order (canonical, the same program with
  prose after it, wrappers that break chosen calls, return None, an operator swap, an off-by-one).

``variants(program, entry_point)`` is also what benchmarks/data_pipeline_throughput.py samples.
"""
from __future__ import annotations

import ast
import json
import re
import warnings

from data_prep.seeds import strip_prints
from tests.data_prep.fake_openai_server import Reply

VARIANTS = ("canonical", "canonical_prose", "fail_first", "pass_first", "none", "op_swap", "off_by_one",
            "pass_first_v2")
_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
        ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
        ast.BitXor: ast.BitAnd, ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.MatMult: ast.Mult}
_CMP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.Lt, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def _parse(program: str) -> ast.Module:
    with warnings.catch_warnings():  # MBPP's invalid escapes such as '\d'
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(program)


def _source_order(tree: ast.AST) -> list[ast.AST]:
    nodes = [n for n in ast.walk(tree) if hasattr(n, "lineno")]
    return sorted(nodes, key=lambda n: (n.lineno, n.col_offset))  # stable: outer nodes first on ties


def op_swap(program: str) -> str:
    """The first operator in source order swapped (+ -> -, / -> *, < -> >, == -> !=, ...)."""
    tree = _parse(program)
    for node in _source_order(tree):
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            node.op = _BIN[type(node.op)]()
            return ast.unparse(tree) + "\n"
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _CMP:
            node.ops[0] = _CMP[type(node.ops[0])]()
            return ast.unparse(tree) + "\n"
    return program + "\n# nothing to swap\n"


def off_by_one(program: str) -> str:
    """The first integer constant in source order plus one."""
    tree = _parse(program)
    for node in _source_order(tree):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            node.value += 1
            return ast.unparse(tree) + "\n"
    return program + "\n# no integer constant\n"


def _wrap(program: str, entry: str, correct_calls: str, tag: str = "") -> str:
    """Calls of ``entry`` are answered correctly only when the call number (from 1) satisfies the
    condition ``correct_calls`` on ``_n``; otherwise they return None."""
    return (f"{program.rstrip()}\n\n\n_orig_{entry} = {entry}\n_n = 0{tag}\n\n\n"
            f"def {entry}(*args, **kwargs):\n    global _n\n    _n += 1\n"
            f"    if {correct_calls}:\n        return _orig_{entry}(*args, **kwargs)\n    return None\n")


def variants(program: str, entry: str) -> dict[str, str]:
    """Answer texts (what follows the solver prompt's prefill) for every name in VARIANTS."""
    code = {
        "canonical": program,
        "fail_first": _wrap(program, entry, "_n != 1"),
        "pass_first": _wrap(program, entry, "_n == 1"),
        "none": f"{program.rstrip()}\n\n\ndef {entry}(*args, **kwargs):\n    return None\n",
        "op_swap": op_swap(program),
        "off_by_one": off_by_one(program),
        "pass_first_v2": _wrap(program, entry, "_n == 1", tag="  # second variant"),
    }
    texts = {k: f"{v.rstrip()}\n```" for k, v in code.items()}
    texts["canonical_prose"] = f"{program.rstrip()}\n```\n\nThe function above solves the problem."
    return {k: texts[k] for k in VARIANTS}


def negate(test: str) -> str:
    return f"assert not ({ast.unparse(_parse(test).body[0].test)})"


def synthesized_tests(rec) -> list[str]:
    """The tests the fake rewriter returns for an MBPP record (see the module docstring)."""
    tests = list(rec.test_cases)
    if int(rec.id.split("_")[-1]) % 10 == 7:
        tests[1], tests[2] = negate(tests[1]), negate(tests[2])
    return tests + list(rec.challenge_test_cases or []) + [negate(rec.test_cases[0])]


class MBPPFakeLLM:
    """``responder(body, attempt)`` for FakeOpenAIServer over the given MBPP records.

    The rewritten question ends with ``(MBPP task N)``, which is how solve requests are matched to
    tasks. MBPP repeats a few tasks; a seed matches the first task with its question and program."""

    _SEED = re.compile(r"Task:\n(.*?)\n\nProgram:\n```python\n(.*?)\n```\n\nRewrite this material", re.S)
    _TASK = re.compile(r"\(MBPP task (\d+)\)")

    def __init__(self, records):
        self.by_seed: dict = {}
        for r in records:
            self.by_seed.setdefault((r.question, strip_prints(r.canonical_solution).strip()), r)
        self.by_number = {r.id.split("_")[-1]: r for r in records}

    def record_for_seed(self, instruction: str, program: str):
        return self.by_seed[(instruction, program.strip())]

    @staticmethod
    def question(rec) -> str:
        return f"{rec.question} (MBPP task {rec.id.split('_')[-1]})"

    def __call__(self, body: dict, attempt: int) -> Reply:
        content = next(m["content"] for m in body["messages"] if m["role"] == "user")
        m = self._SEED.search(content)
        if m:  # synthesize
            rec = self.record_for_seed(m[1], m[2])
            return Reply([json.dumps({"question": self.question(rec), "tests": synthesized_tests(rec)})])
        rec = self.by_number[self._TASK.search(content)[1]]
        if body["model"] == "oracle":
            return Reply([f"{rec.canonical_solution.rstrip()}\n```"] * body.get("n", 1))
        texts = list(variants(rec.canonical_solution, rec.entry_point).values())
        return Reply(texts[: body.get("n", 1)])
