"""weight_sync packing on CPU: bucket limits, and names/dtypes/shapes/values surviving the trip."""
from __future__ import annotations

import pytest
import torch

from trainer.engines.weight_sync import (ALIGN, BucketMeta, broadcast_buckets, cpu_buckets, iter_packed,
                                         pack_bucket, unpack_bucket)


def mixed_tensors():
    g = torch.Generator().manual_seed(0)
    return [
        ("model.embed_tokens.weight", torch.randn(37, 16, generator=g).to(torch.bfloat16)),
        ("model.layers.0.self_attn.q_proj.bias", torch.randn(5, generator=g)),
        ("model.layers.0.mlp.up_proj.weight", torch.randn(24, 16, generator=g).to(torch.float16)),
        ("model.scalar", torch.tensor(3.5, dtype=torch.float64)),
        ("model.steps", torch.arange(7, dtype=torch.int64)),
        ("model.flags", torch.tensor([True, False, True])),
        ("model.empty", torch.zeros(0, 4)),
        ("model.transposed", torch.randn(6, 10, generator=g).t()),  # not contiguous
        ("model.norm.weight", torch.randn(16, generator=g)),
    ]


def assert_same(got, want):
    assert [n for n, _ in got] == [n for n, _ in want]
    for (name, a), (_, b) in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), name


@pytest.mark.parametrize("bucket_bytes", [1, 200, 1000, 5000, 10**6])
def test_iter_packed_respects_the_limit_and_round_trips(bucket_bytes):
    tensors = mixed_tensors()
    buckets = list(iter_packed(tensors, bucket_bytes))
    unpacked = []
    for flat, meta in buckets:
        assert flat.dtype == torch.uint8 and flat.numel() == meta.nbytes
        assert meta.nbytes <= bucket_bytes or len(meta.tensors) == 1  # only a lone big tensor exceeds
        assert all(m.offset % ALIGN == 0 for m in meta.tensors)
        wire = BucketMeta.from_wire(meta.to_wire())
        assert wire == meta
        unpacked += unpack_bucket(flat.clone(), wire)
    assert_same(unpacked, tensors)
    if bucket_bytes == 1:
        assert len(buckets) == len(tensors)
    if bucket_bytes == 10**6:
        assert len(buckets) == 1


def test_buckets_are_filled_greedily_in_order():
    tensors = [(f"w{i}", torch.zeros(16)) for i in range(10)]  # 64 bytes each = ALIGN
    sizes = [len(meta.tensors) for _, meta in iter_packed(tensors, 3 * 64)]
    assert sizes == [3, 3, 3, 1]


def test_wire_format_is_plain_and_checked():
    _, meta = pack_bucket(mixed_tensors())
    wire = meta.to_wire()
    as_lists = [[list(x) if isinstance(x, tuple) else x for x in entry] for entry in wire[0]], wire[1]
    assert BucketMeta.from_wire(as_lists) == meta  # what msgpack would hand back
    bad_dtype = ([("w", "not_a_dtype", [2], 0)], 64)
    with pytest.raises(ValueError, match="dtype"):
        BucketMeta.from_wire(bad_dtype)
    overrun = ([("w", "float32", [32], 0)], 64)
    with pytest.raises(ValueError, match="overruns"):
        BucketMeta.from_wire(overrun)
    flat, meta = pack_bucket([("w", torch.ones(4))])
    with pytest.raises(ValueError, match="flat uint8"):
        unpack_bucket(flat[:-1], meta)


def test_cpu_buckets_are_independent_copies_within_the_limit():
    tensors = mixed_tensors()
    limit_mb = 1500 / 2**20
    buckets = list(cpu_buckets(tensors, bucket_mb=limit_mb))
    assert len(buckets) > 1
    for bucket in buckets:
        size = sum(t.numel() * t.element_size() for _, t in bucket)
        assert size <= 1500 or len(bucket) == 1
        assert all(t.device.type == "cpu" and t.is_contiguous() for _, t in bucket)
    flat = [nt for b in buckets for nt in b]
    assert_same(flat, tensors)
    tensors[-1][1].add_(1.0)  # the policy's tensor changes after the copy was taken
    assert not torch.equal(flat[-1][1], tensors[-1][1])
    with pytest.raises(ValueError):
        next(cpu_buckets(tensors, bucket_mb=0))


class FakeGroup:
    """Stands in for the NCCL group: records what rank 0 broadcast, as a receiver would see it."""

    def __init__(self, log):
        self.log = log

    def broadcast(self, tensor, src):
        self.log.append(("broadcast", src, tensor.clone()))


def test_broadcast_buckets_announces_then_sends_then_waits():
    tensors = mixed_tensors()
    log = []

    def announce(meta):
        log.append(("announce", meta.to_wire()))
        return len(log)

    def wait(pending):
        log.append(("wait", pending))

    sent = broadcast_buckets(iter(tensors), FakeGroup(log), announce=announce, wait=wait,
                             bucket_mb=1200 / 2**20)
    assert sent == len(log) // 3 and sent > 1
    received = []
    for i in range(sent):
        (a, wire), (b, src, flat), (c, pending) = log[3 * i: 3 * i + 3]
        assert (a, b, c, src) == ("announce", "broadcast", "wait", 0)
        assert pending == 3 * i + 1  # wait() gets what announce() returned
        received += unpack_bucket(flat, BucketMeta.from_wire(wire))
    assert_same(received, tensors)
