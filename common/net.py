"""Picking a TCP port for a process-group rendezvous."""
from __future__ import annotations

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
