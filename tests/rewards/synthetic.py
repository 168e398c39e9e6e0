"""A small learnable preference task and a tiny model for reward-model tests (nothing downloaded).

Each question asks for the sum, difference or product of two named arguments; the chosen program
is correct, the rejected one has a bug: an off-by-one (``+ 1``) or a constant return. Held-out
prompts are unseen (name, arguments, operation) combinations. (A wrong-operator variant, which needs
the question word matched to the operator, also trains but only after a few hundred steps of
plateau that moves with the seed: too slow and fragile for a test.)
"""
from __future__ import annotations

import itertools
import random

OPS = {"sum": "+", "difference": "-", "product": "*"}
NAMES = ["f", "g", "h", "calc", "combine", "solve", "apply", "compute"]
ARGS = [("a", "b"), ("x", "y"), ("u", "v"), ("m", "n"), ("p", "q"), ("s", "t")]


def question(name: str, args: tuple[str, str], op: str) -> str:
    return f"Write a function {name}({args[0]}, {args[1]}) that returns the {op} of {args[0]} and {args[1]}."


def program(name: str, args: tuple[str, str], symbol: str, bug: str | None = None) -> str:
    body = {None: f"{args[0]} {symbol} {args[1]}", "off_by_one": f"{args[0]} {symbol} {args[1]} + 1",
            "constant": "0"}[bug]
    return f"def {name}({args[0]}, {args[1]}):\n    return {body}\n"


def make_pairs(seed: int = 0) -> list[dict]:
    """Every (name, args, op) prompt, once with each bug as the rejected answer: 288 pairs."""
    rng = random.Random(seed)
    pairs = []
    for name, args, op in itertools.product(NAMES, ARGS, OPS):
        for bug in ("off_by_one", "constant"):
            pairs.append({"prompt": question(name, args, op), "chosen": program(name, args, OPS[op]),
                          "rejected": program(name, args, OPS[op], bug)})
    rng.shuffle(pairs)
    return pairs


def corpus() -> list[str]:
    texts = [question(n, a, o) for n, a, o in itertools.product(NAMES, ARGS, OPS)]
    texts += [program(n, a, s, bug) for n, a, s, bug in
              itertools.product(NAMES, ARGS, OPS.values(), (None, "off_by_one", "constant"))]
    return texts


def build_tiny_model(path: str, hidden: int = 64, layers: int = 2, seed: int = 0) -> str:
    from trainer.tiny import build_tiny_qwen2, build_tokenizer

    tok = build_tokenizer(path, corpus=corpus(), vocab_size=400)
    build_tiny_qwen2(path, tokenizer=tok, seed=seed, hidden=hidden, layers=layers, heads=4, kv_heads=2)
    return path
