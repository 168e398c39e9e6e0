"""Host side: rebuild the values the sandbox sends (sandbox/harness.py ``encode_value``) as plain
Python objects.

The text comes from the program's process, so decoding is total and bounded: any malformed input is
a ``DecodeError`` (never another exception), and no value can make later host work slow: integers
are capped at 8,388,608 bits (a Fraction's parts at 131,072: building one takes a gcd), Decimal
exponents at 4,300 digits (what ``int()`` of it costs), ranges at a million items, nesting at 200
levels, and a set or dict whose distinct items share one hash more than 64 times (the quadratic case
of hash tables) is refused. A value over the sandbox's cap may come as a digest (``DigestValue``).
"""
from __future__ import annotations

import collections
import decimal
import fractions
import json
import re
from typing import Any, Iterable

MAX_INT_BITS = 1 << 23  # HumanEval+ 83 expects 3.3-million-bit answers
MAX_FRACTION_BITS = 1 << 17
MAX_RANGE = 1 << 20
MAX_DEPTH = 200
MAX_DECIMAL_EXPONENT = 4300
MAX_SAME_HASH = 64
_DECIMAL = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|Infinity|Inf|NaN)\Z")


_PLAIN = {int, float, str, bool, type(None)}


class DecodeError(Exception):
    pass


class IteratorValue:
    """An iterator the program returned, materialised inside the sandbox. Like the iterator it
    stands for, it equals only itself, but list(), sorted(), sum() etc. consume its items."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def __repr__(self) -> str:
        return f"<iterator over {self.items!r}>"


class RaisedValue:
    """A hole that raised inside the sandbox. The host raises ``HoleRaised`` only when the assertion
    needs its value, so ``assert r is None or r[0] == 0`` holds for ``r = None``, as in Python."""

    __slots__ = ("type", "msg")

    def __init__(self, exc: dict) -> None:
        self.type, self.msg = str(exc.get("type", "?"))[:100], str(exc.get("msg", ""))[:300]

    def __repr__(self) -> str:
        return f"<raised {self.type}: {self.msg}>"


class DigestValue:
    """A value over the value cap that the sandbox sent as the SHA-256 of its marshal encoding
    (sandbox/harness.py ``encode_or_digest``; made of exact numbers other than NaN, strings, bytes,
    booleans, None and containers only, so equal encodings mean equal values). It equals a digest that
    is the same; any other comparison or use raises ``HoleRaised`` with ValueTooLarge, the verdict the
    value would have had without a digest: different encodings can still be equal values (a set built
    in another order)."""

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def _too_large(self, *_: Any) -> Any:
        raise HoleRaised(RaisedValue({"type": "ValueTooLarge",
                                      "msg": "a value over the cap is only compared whole, with an equal one"}))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DigestValue) and other.digest == self.digest:
            return True
        return self._too_large()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = __len__ = __iter__ = __contains__ = __getitem__ = __bool__ = _too_large  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = __add__ = __radd__ = __mul__ = __rmul__ = _too_large  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<value over the cap, sha256 {self.digest[:16]}>"


class HoleRaised(Exception):
    def __init__(self, raised: RaisedValue) -> None:
        super().__init__(raised.msg)
        self.raised = raised


def check_hashes(items: Iterable[Any]) -> list:
    """The items as a list, refused if more than MAX_SAME_HASH distinct ones share a hash: building a
    set or dict of them would take quadratic time on the host."""
    items = list(items)
    seen: dict[int, list] = {}
    for x in items:
        group = seen.setdefault(hash(x), [])
        if any(x == y for y in group):
            continue
        group.append(x)
        if len(group) > MAX_SAME_HASH:
            raise DecodeError("too many distinct values with one hash")
    return items


def decode_value(payload: bytes) -> Any:
    """Rebuild a value sent by the sandbox as plain Python objects; anything unexpected is refused."""
    try:
        raw = json.loads(payload)
        return _dec(raw, 0)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - any other failure of hostile text is a malformed value, never a crash
        raise DecodeError(f"malformed value: {type(e).__name__}: {str(e)[:100]}") from None


def decode_raw(raw: Any) -> Any:
    """``decode_value`` of text already parsed as JSON."""
    try:
        return _dec(raw, 0)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - as in decode_value: decoding is total
        raise DecodeError(f"malformed value: {type(e).__name__}: {str(e)[:100]}") from None


def _int(v: Any, bits: int = MAX_INT_BITS) -> int:
    if not isinstance(v, str) or len(v) > bits // 4 + 4:
        raise DecodeError("bad integer")
    return int(v, 16)


def _float(v: Any) -> float:
    if not isinstance(v, str) or len(v) > 40:
        raise DecodeError("bad float")
    return float.fromhex(v)


def _decimal(v: Any) -> decimal.Decimal:
    if not isinstance(v, str) or len(v) > 10000 or not _DECIMAL.match(v):
        raise DecodeError("bad Decimal")
    d = decimal.Decimal(v)
    if d.is_finite() and abs(d.adjusted()) > MAX_DECIMAL_EXPONENT:
        raise DecodeError(f"Decimal exponent beyond {MAX_DECIMAL_EXPONENT}")
    return d


def _dec(o: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DecodeError("value nested too deeply")
    t = type(o)
    if o is None or t in (bool, int, str, float):
        return o
    if t is list:
        if set(map(type, o)) <= _PLAIN:  # numbers and strings as JSON gave them: nothing to rebuild
            return o
        return [_dec(x, depth + 1) for x in o]
    if t is not dict or len(o) != 1:
        raise DecodeError("unknown value encoding")
    (tag, v), = o.items()
    if tag == "i":
        return _int(v)
    if tag == "f":
        return _float(v)
    if tag == "c":
        return complex(_float(v[0]), _float(v[1]))
    if tag in ("b", "ba"):
        if not isinstance(v, str):
            raise DecodeError("bad bytes")
        return bytes.fromhex(v) if tag == "b" else bytearray.fromhex(v)
    if tag == "dec":
        return _decimal(v)
    if tag == "fr":
        return fractions.Fraction(_int(v[0], MAX_FRACTION_BITS), _int(v[1], MAX_FRACTION_BITS))
    if tag == "h":
        if not (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)):
            raise DecodeError("bad digest")
        return DigestValue(v)
    if tag == "x":
        if not isinstance(v, dict):
            raise DecodeError("bad exception value")
        return RaisedValue(v)
    if tag == "r":
        if not (isinstance(v, list) and len(v) == 3 and all(type(x) is int for x in v)):
            raise DecodeError("bad range")
        r = range(*v)
        if len(r) > MAX_RANGE:
            raise DecodeError("range too long to compare")
        return r
    if not isinstance(v, list):
        raise DecodeError("bad container")
    items = [_dec(x, depth + 1) for x in v]
    if tag == "t":
        return tuple(items)
    if tag == "it":
        return IteratorValue(items)
    if tag == "dq":
        return collections.deque(items)
    if tag == "s":
        return set(check_hashes(items))
    if tag == "fs":
        return frozenset(check_hashes(items))
    if tag == "dk":
        return dict.fromkeys(check_hashes(items)).keys()
    if tag == "dv":
        return dict(enumerate(items)).values()
    if tag in ("d", "od", "ctr", "di"):
        if not all(type(kv) is list and len(kv) == 2 for kv in items):
            raise DecodeError("bad mapping")
        check_hashes(kv[0] for kv in items)
        pairs = [(kv[0], kv[1]) for kv in items]
        if tag == "ctr":
            return collections.Counter(dict(pairs))
        if tag == "di":
            return dict(pairs).items()
        return collections.OrderedDict(pairs) if tag == "od" else dict(pairs)
    raise DecodeError(f"unknown value tag {tag!r}")
