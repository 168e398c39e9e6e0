"""The upstream benchmark files: where they are, their checksums, and reading them."""
from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import warnings
from pathlib import Path

from common.pyparse import parse

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


def default_data_dir() -> Path:
    """``$ACECODER_DATA_DIR`` if set, else ``../shared/data`` relative to the project root."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


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


def read_jsonl(path: Path) -> list[dict]:
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
