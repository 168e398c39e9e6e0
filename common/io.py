"""Record I/O shared by every stage: JSONL or Parquet in, append-only resumable output.

Errors name the file, the line (JSONL) or row (Parquet) and the field, so a user can fix the input.
Outputs are append-only and keyed by an id, so an interrupted stage loses nothing and a re-run
skips what is finished.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator


class RecordError(ValueError):
    """A bad input record: where it is and what is wrong."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = f"{self.path}:{line}" if line is not None else self.path
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


def _is_parquet(path: str | os.PathLike) -> bool:
    return str(path).endswith((".parquet", ".pq"))


def iter_records(path: str | os.PathLike,
                 on_error: Callable[[RecordError], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line_or_row_number, record) from a JSONL or Parquet file, numbers starting at 1.

    A line that is not a JSON object is reported through ``on_error`` (raised when it is None)
    and skipped; blank lines are ignored.
    """
    path = str(path)

    def bad(err: RecordError) -> None:
        if on_error is None:
            raise err
        on_error(err)

    if _is_parquet(path):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row
        return
    opener = open
    if path.endswith(".gz"):
        import gzip

        opener = gzip.open  # type: ignore[assignment]
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                bad(RecordError(path, i, None, f"not valid JSON ({e.msg} at column {e.colno})"))
                continue
            if not isinstance(rec, dict):
                bad(RecordError(path, i, None, f"expected a JSON object, got {type(rec).__name__}"))
                continue
            yield i, rec


def read_records(path: str | os.PathLike) -> list[dict]:
    """All records of a file; the first bad line raises RecordError."""
    return [rec for _, rec in iter_records(path)]


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a directory's entries (a rename into it, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """Every file under ``root``, then every directory: durable before a checkpoint is made current."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fsync_dir(os.path.join(dirpath, name))  # an O_RDONLY fsync works for files too
        fsync_dir(dirpath)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole file so that readers see either the old or the new content, never half."""
    path = str(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Atomically write all records as JSONL or Parquet (by extension)."""
    path = str(path)
    records = list(records)
    if _is_parquet(path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            # from_pylist takes its columns from the first row only: give every row every key.
            columns = list(dict.fromkeys(k for r in records for k in r))
            rows = [{k: r.get(k) for k in columns} for r in records]
            pq.write_table(pa.Table.from_pylist(rows), tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@dataclass
class AppendWriter:
    """Append-only, resumable output keyed by ``key``.

    JSONL outputs are appended to in place, one flushed line per record. Parquet cannot be appended
    to, so records go to a JSONL journal beside it (``PATH.partial.jsonl``) and ``close()`` turns the
    journal into the Parquet file atomically. A torn last line (a crash mid-write) is cut off on open;
    ``done`` holds the keys already written, so a re-run skips them.
    """

    path: str
    key: str = "id"

    def __post_init__(self) -> None:
        self.path = str(self.path)
        self.journal = self.path + ".partial.jsonl" if _is_parquet(self.path) else self.path
        self.done: set[Any] = set()
        if _is_parquet(self.path) and os.path.exists(self.path) and not os.path.exists(self.journal):
            # A finished Parquet output: resume from its rows.
            self._seed_journal_from_parquet()
        os.makedirs(os.path.dirname(os.path.abspath(self.journal)), exist_ok=True)
        self._truncate_torn_tail()
        if os.path.exists(self.journal):
            with open(self.journal, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        self.done.add(self._key_of(json.loads(line)))
        self._f = open(self.journal, "a", encoding="utf-8")

    def _key_of(self, rec: dict) -> Any:
        k = rec.get(self.key)
        return tuple(k) if isinstance(k, list) else k

    def _seed_journal_from_parquet(self) -> None:
        rows = [rec for _, rec in iter_records(self.path)]
        atomic_write_text(self.journal, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def _truncate_torn_tail(self) -> None:
        if not os.path.exists(self.journal):
            return
        with open(self.journal, "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            f.truncate(cut)

    def __contains__(self, key: Any) -> bool:
        return (tuple(key) if isinstance(key, list) else key) in self.done

    def write(self, rec: dict) -> None:
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()
        self.done.add(self._key_of(rec))

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if _is_parquet(self.path):
            rows = [rec for _, rec in iter_records(self.journal)]
            write_records(self.path, rows)
            os.unlink(self.journal)

    def __enter__(self) -> "AppendWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
