"""Policy side of a weight sync: (name, tensor) pairs in, buckets out (push buckets, not one
RPC per tensor: per-tensor RPCs are what breaks and hangs across vLLM versions).

A bucket is one flat uint8 tensor holding many parameters back to back (each start aligned to
``ALIGN`` bytes so it can be viewed as its dtype again) plus a ``BucketMeta`` naming what lies
where. Two ways out:

- ``cpu_buckets``: lists of CPU copies, at most ``bucket_mb`` each, for ``engine.load_weights``
  (through Ray's object store, or in the same process);
- ``broadcast_buckets``: rank 0 of the policy packs each bucket on its GPU and broadcasts it over
  the NCCL group that the engines joined (``VLLMEngine.init_weight_sync_group``); ``announce(meta)``
  makes every engine post the matching receive first (``engine.receive_bucket.remote(meta)``).

Both consume the iterator lazily and copy each tensor as it arrives, so a caller under ZeRO-3 can
gather one parameter at a time and release it right after yielding it. Nothing here imports Ray
or vLLM; ``unpack_bucket`` is what the engine side runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol

import torch

ALIGN = 64  # bytes; a multiple of every dtype's size, so each slice can be viewed as its dtype


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "bfloat16"
    shape: tuple[int, ...]
    offset: int  # byte offset in the bucket

    @property
    def nbytes(self) -> int:
        numel = 1
        for d in self.shape:
            numel *= d
        return numel * _dtype(self.dtype).itemsize


@dataclass(frozen=True)
class BucketMeta:
    tensors: tuple[TensorMeta, ...]
    nbytes: int  # length of the flat bucket

    def to_wire(self) -> tuple:
        """Plain tuples of str/int, safe for any RPC serializer (msgpack turns tuples into lists)."""
        return tuple((t.name, t.dtype, tuple(t.shape), t.offset) for t in self.tensors), self.nbytes

    @classmethod
    def from_wire(cls, wire) -> "BucketMeta":
        tensors, nbytes = wire
        metas = tuple(TensorMeta(str(n), str(d), tuple(int(x) for x in s), int(o)) for n, d, s, o in tensors)
        for m in metas:
            _dtype(m.dtype)
            if m.offset < 0 or m.offset + m.nbytes > nbytes:
                raise ValueError(f"bucket entry {m.name!r} ({m.offset}+{m.nbytes}) overruns {nbytes} bytes")
        return cls(metas, int(nbytes))


class BroadcastGroup(Protocol):
    """What broadcast_buckets needs: vLLM's PyNcclCommunicator has this signature."""

    def broadcast(self, tensor: torch.Tensor, src: int) -> Any: ...


# ----------------------------------------------------------------------------- packing

def iter_packed(named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int,
                device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, BucketMeta]]:
    """Pack tensors, in order, into flat uint8 buckets of at most ``bucket_bytes`` (a larger tensor
    gets a bucket of its own). ``device`` defaults to the first tensor's device."""
    if bucket_bytes < 1:
        raise ValueError(f"bucket size must be positive, got {bucket_bytes} bytes")
    buf, metas, used = None, [], 0
    for name, tensor in named_tensors:
        tensor = tensor.detach()
        meta = TensorMeta(name, _dtype_name(tensor.dtype), tuple(tensor.shape), _align(used))
        if metas and meta.offset + meta.nbytes > bucket_bytes:
            yield buf[:used], BucketMeta(tuple(metas), used)
            buf, metas, used = None, [], 0
            meta = TensorMeta(meta.name, meta.dtype, meta.shape, 0)
        if buf is None:
            target = tensor.device if device is None else torch.device(device)
            buf = torch.empty(max(bucket_bytes, meta.nbytes), dtype=torch.uint8, device=target)
        buf[meta.offset:meta.offset + meta.nbytes].copy_(_as_bytes(tensor))
        metas.append(meta)
        used = meta.offset + meta.nbytes
    if metas:
        yield buf[:used], BucketMeta(tuple(metas), used)


def pack_bucket(named_tensors: Iterable[tuple[str, torch.Tensor]],
                device: torch.device | str | None = None) -> tuple[torch.Tensor, BucketMeta]:
    """All tensors in one bucket (empty input gives an empty bucket)."""
    named_tensors = list(named_tensors)
    total = sum(_align(t.numel() * t.element_size()) for _, t in named_tensors)
    for packed in iter_packed(named_tensors, max(total, 1), device):
        return packed
    return torch.empty(0, dtype=torch.uint8, device=device), BucketMeta((), 0)


def unpack_bucket(flat: torch.Tensor, meta: BucketMeta) -> list[tuple[str, torch.Tensor]]:
    """Views into ``flat``, one per tensor, with the original names, dtypes and shapes."""
    if flat.dtype != torch.uint8 or flat.dim() != 1 or flat.numel() != meta.nbytes:
        raise ValueError(f"expected a flat uint8 bucket of {meta.nbytes} bytes, got "
                         f"{flat.dtype} {tuple(flat.shape)}")
    return [(m.name, flat[m.offset:m.offset + m.nbytes].view(_dtype(m.dtype)).view(m.shape))
            for m in meta.tensors]


# ----------------------------------------------------------------------------- the two ways out

def cpu_buckets(named_tensors: Iterable[tuple[str, torch.Tensor]],
                bucket_mb: float = 512) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Lists of (name, independent CPU copy), each list at most ``bucket_mb`` (one tensor may exceed it).

    Copies, never views of a shared buffer: pickling views would ship the whole buffer per view.
    """
    limit, bucket, size = _bucket_bytes(bucket_mb), [], 0
    for name, tensor in named_tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor.detach().to("cpu", copy=True).contiguous()))
        size += nbytes
    if bucket:
        yield bucket


def broadcast_buckets(named_tensors: Iterable[tuple[str, torch.Tensor]], group: BroadcastGroup, *,
                      announce: Callable[[BucketMeta], Any],
                      wait: Callable[[Any], Any] = lambda pending: None,
                      bucket_mb: float = 512, src: int = 0,
                      device: torch.device | str | None = None) -> int:
    """Rank ``src`` of the weight-sync group sends every tensor, one bucket per broadcast.

    For each bucket: ``pending = announce(meta)`` (the engines start receiving), the broadcast,
    then ``wait(pending)`` (the engines have loaded it), so one bucket is in flight at a time.
    Returns the number of buckets sent. The caller runs ``finish_weight_update`` on the engines.
    """
    count = 0
    for flat, meta in iter_packed(named_tensors, _bucket_bytes(bucket_mb), device):
        pending = announce(meta)
        group.broadcast(flat, src=src)
        wait(pending)
        count += 1
    return count


# ----------------------------------------------------------------------------- helpers

def _bucket_bytes(bucket_mb: float) -> int:
    if bucket_mb <= 0:
        raise ValueError(f"bucket_mb must be positive, got {bucket_mb}")
    return max(1, int(bucket_mb * 1024 * 1024))


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in a weight bucket")
    return dtype
