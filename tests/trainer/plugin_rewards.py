"""Custom rewards used by the end-to-end tests (imported by reward actors as module:Class)."""
import os
import time

from rewards.base import Reward, RewardResult


class CallLog(Reward):
    """Writes one line per call into ``log_dir`` (so the test sees that the plugin ran) and scores
    answers by length."""

    def __init__(self, log_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.log_dir = log_dir

    def score(self, samples):
        with open(os.path.join(self.log_dir, f"calls-{os.getpid()}.txt"), "a") as f:
            f.write(f"{len(samples)}\n")
        return [RewardResult(min(1.0, len(s.response) / 10), "ok", {"chars": len(s.response)}) for s in samples]


class Raises(Reward):
    def score(self, samples):
        raise RuntimeError("this reward is broken")


class ReturnsNone(Reward):
    def score(self, samples):
        return [None] * len(samples)


class Hangs(Reward):
    def score(self, samples):
        time.sleep(3600)


class DiesOnce(Reward):
    """The reward actor's process dies on its first call (a marker file remembers it across restarts)."""

    def __init__(self, marker: str, **kwargs):
        super().__init__(**kwargs)
        self.marker = marker

    def score(self, samples):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return [RewardResult(1.0) for _ in samples]


class AlwaysDies(Reward):
    def score(self, samples):
        os._exit(1)
