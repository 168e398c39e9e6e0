"""Process-group rendezvous: a free TCP port, and joining the torch.distributed group."""
from __future__ import annotations

import os
import random
import socket


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "") -> int:
    """A port nobody listens on now, chosen below the kernel's ephemeral range.

    Binding port 0 returns an ephemeral port, which any outgoing connection on the host (Ray opens
    many) may take before the rendezvous binds it: that race failed CI with EADDRINUSE. Ports below the
    ephemeral range are only ever taken by explicit listeners, so a random free one stays free.
    """
    high = _ephemeral_low()
    low = 20000 if high > 21000 else 1024
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded range: fall back to what the kernel hands out
        s.bind((host, 0))
        return s.getsockname()[1]


def init_distributed(device: str, rank: int | None = None, world_size: int | None = None,
                     master_addr: str | None = None, master_port: int | None = None) -> tuple[int, int]:
    """Join the torch.distributed group DeepSpeed uses (NCCL when ``device`` is "cuda", else gloo);
    returns (rank, world size). Values given here are put into the environment; missing ones come
    from it (the deepspeed and torchrun launchers set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT), else a one-process group on a free local port. A group already joined is kept."""
    import deepspeed
    import torch

    given = {"RANK": rank, "WORLD_SIZE": world_size, "MASTER_ADDR": master_addr, "MASTER_PORT": master_port}
    os.environ.update({k: str(v) for k, v in given.items() if v is not None})
    if "MASTER_PORT" not in os.environ:  # a free port: other jobs on this host may hold a fixed one
        os.environ["MASTER_PORT"] = str(free_port())
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
        os.environ.setdefault(key, value)
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if device == "cuda" else "gloo", verbose=False)
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
