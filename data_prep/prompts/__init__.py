"""Chat prompt templates for the data stages, and the default templates shipped beside this file.

Users replace a stage's prompt by passing their own file (``prompt_path=`` / ``--prompt``) in the
same format as the defaults here.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

PROMPTS_DIR = os.path.dirname(os.path.abspath(__file__))
SYNTHESIZE = os.path.join(PROMPTS_DIR, "synthesize.txt")
SOLVE = os.path.join(PROMPTS_DIR, "solve.txt")

_SECTION = re.compile(r"^=== (system|user|assistant) ===[ \t]*$", re.M)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class ChatTemplate:
    """Chat messages with ``{name}`` placeholders, loaded from a text file.

    File format: a leading block of lines starting with ``#`` (documentation, stripped); then
    sections, each opened by a line ``=== system ===``, ``=== user ===`` or ``=== assistant ===``.
    Blank lines around a section's text are dropped; a final assistant section is a prefill and keeps
    a trailing newline so the model starts on a fresh line. Only ``{name}`` with a known name is
    replaced, in one pass, so JSON braces in the text and braces in the values need no escaping.
    """

    path: str
    messages: tuple[tuple[str, str], ...]

    def render(self, **values: str) -> list[dict[str, str]]:
        sub = lambda m: str(values[m[1]]) if m[1] in values else m[0]  # noqa: E731
        return [{"role": role, "content": _PLACEHOLDER.sub(sub, text)} for role, text in self.messages]


def load_chat_template(path: str | os.PathLike, required: Iterable[str] = ()) -> ChatTemplate:
    path = str(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    text = "\n".join(lines)
    parts = _SECTION.split(text)
    if parts[0].strip():
        raise ValueError(f"{path}: text before the first '=== user ===' style section line")
    messages = [(role, body.strip("\n")) for role, body in zip(parts[1::2], parts[2::2])]
    if not messages:
        raise ValueError(f"{path}: no sections; start each message with a line like '=== user ==='")
    if messages[-1][0] == "assistant":
        messages[-1] = ("assistant", messages[-1][1] + "\n")
    used = {m for _, body in messages for m in _PLACEHOLDER.findall(body)}
    missing = [name for name in required if name not in used]
    if missing:
        raise ValueError(f"{path}: template lacks placeholder(s) {', '.join('{%s}' % m for m in missing)}")
    return ChatTemplate(path, tuple(messages))
