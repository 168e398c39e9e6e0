import random
import socket

from common.net import _ephemeral_low, free_port


def test_free_port_is_bindable_and_outside_the_ephemeral_range():
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1  # random, not one fixed port that a second job on the host would collide on
    for port in ports:
        assert port < _ephemeral_low()
        with socket.socket() as s:
            s.bind(("", port))


def test_a_taken_port_is_skipped(monkeypatch):
    with socket.socket() as held:
        held.bind(("", free_port()))
        held.listen()
        taken = held.getsockname()[1]
        draws = iter([taken, taken, taken + 1])
        monkeypatch.setattr(random.SystemRandom, "randrange", lambda self, a, b: next(draws))
        assert free_port() == taken + 1
