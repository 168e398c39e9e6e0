"""Output oracles the host applies itself: EvalPlus' tolerance check and special oracles, numpy-style
``allclose``/``isclose``.

A test such as ``assert _evalplus_check(f(x), [1.5, 2.0], 1e-06)`` is split like any host-compared
assertion (sandbox/checks.py): only ``f(x)`` is evaluated inside the sandbox, and the functions below
run on the host, on the decoded value. Their names (``_evalplus_*``, ``np.allclose``, ...) always mean
these functions in a test, whatever the test's setup defines.

``data_prep/benchmarks/plus.py`` writes the source of the ``_evalplus_*`` functions into the setup of the
HumanEval+/MBPP+ records it converts, so a record stays runnable on its own by any executor: one
implementation, two places it runs. They therefore use nothing but builtins and ``math``.
"""
from __future__ import annotations

import math
from typing import Any


def _evalplus_is_floats(x):
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(i, float) for i in x)


def _evalplus_allclose(out, exp, atol, rtol=1e-07):
    # numpy.allclose on equal shapes (no broadcasting): |out - exp| <= atol + rtol * |exp| everywhere.
    # Element by element on purpose: numpy turns a list holding an int beyond int64 into an object array
    # and raises, so EvalPlus errors on such answers inside the tolerance (HumanEval/34); we pass them.
    if isinstance(out, (list, tuple)) or isinstance(exp, (list, tuple)):
        return (isinstance(out, (list, tuple)) and isinstance(exp, (list, tuple)) and len(out) == len(exp)
                and all(_evalplus_allclose(o, e, atol, rtol) for o, e in zip(out, exp)))
    if not isinstance(out, (int, float, complex)) or not isinstance(exp, (int, float, complex)):
        return False
    if out == exp:
        return True
    diff, scale = abs(out - exp), abs(exp)
    if diff != diff or diff == float("inf") or scale == float("inf"):
        return False  # nan never matches; an infinity only matches itself
    return diff <= atol + rtol * scale


def _evalplus_check(out, exp, atol, as_sets=False):
    """EvalPlus' output oracle: out == exp (as sets for some tasks), or, for a float answer (atol 1e-06)
    or a task tolerance, an answer of the same type and length that is numpy.allclose(out, exp,
    rtol=1e-07, atol=atol)."""
    if atol == 0 and _evalplus_is_floats(exp):
        atol = 1e-06
    if (set(out) == set(exp)) if as_sets else (out == exp):
        return True
    if atol == 0 or type(out) is not type(exp):
        return False
    if isinstance(exp, (list, tuple)) and len(out) != len(exp):
        return False
    return _evalplus_allclose(out, exp, atol)


def _evalplus_found(out):
    """EvalPlus' oracle for regex tasks: a bool answer counts as itself, any other as `out is not None`."""
    return out if isinstance(out, bool) else out is not None


def _evalplus_poly(xs, x):
    """HumanEval/32's polynomial, sum(xs[i] * x ** i), as its dataset computes it (math.pow)."""
    import math

    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def _evalplus_surface_area(base_edge, height):
    """Square pyramid surface area reading `height` as the perpendicular height, rounded."""
    import math

    slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * (base_edge * slant))


def _evalplus_digit_distance(n1, n2):
    """Sum of per-digit differences after left-padding the shorter number with zeros."""
    a, b = str(n1), str(n2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


EVALPLUS = (_evalplus_is_floats, _evalplus_allclose, _evalplus_check, _evalplus_found, _evalplus_poly,
            _evalplus_surface_area, _evalplus_digit_distance)


# ----------------------------------------------------------------------------- numpy-style
def _broadcast(a: Any, b: Any, fn) -> Any:
    """Elementwise fn over nested lists/tuples of equal shape; a number broadcasts against a sequence."""
    seq = (list, tuple)
    if isinstance(a, seq) and isinstance(b, seq):
        if len(a) != len(b):
            raise ValueError("operands could not be broadcast together")
        return [_broadcast(x, y, fn) for x, y in zip(a, b)]
    if isinstance(a, seq):
        return [_broadcast(x, b, fn) for x in a]
    if isinstance(b, seq):
        return [_broadcast(a, y, fn) for y in b]
    return fn(a, b)


def _close(rtol: float, atol: float, equal_nan: bool):
    def fn(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            a, b = int(a), int(b)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            raise TypeError("isclose/allclose compare numbers only")
        if math.isnan(a) or math.isnan(b):
            return equal_nan and math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return abs(a - b) <= atol + rtol * abs(b)
    return fn


def _flatten(x: Any) -> list:
    return [y for e in x for y in _flatten(e)] if isinstance(x, list) else [x]


def allclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    """numpy.allclose on numbers and nested lists/tuples: |a - b| <= atol + rtol * |b| everywhere."""
    return all(_flatten(_broadcast(a, b, _close(rtol, atol, equal_nan))))


def isclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Any:
    """numpy.isclose: a bool for two numbers, else a (nested) list of bools."""
    return _broadcast(a, b, _close(rtol, atol, equal_nan))
