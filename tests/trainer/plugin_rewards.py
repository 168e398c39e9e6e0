"""Custom rewards used by the end-to-end tests (imported by reward actors as module:Class)."""
import os
import time

from rewards.base import Reward, RewardResult


HANG_ONCE_EXISTS = "ACECODER_TEST_HANG_ONCE_EXISTS"


class CallLog(Reward):
    """Writes one line per call into ``log_dir`` (so the test sees that the plugin ran) and scores
    answers by length.

    When the environment variable ``ACECODER_TEST_HANG_ONCE_EXISTS`` names a file and that file
    exists, a call writes ``<file>.hanging`` and sleeps instead: the resume test stops a run at a
    known point (after its first checkpoint, before the next step can train) and kills it there,
    which polling for the checkpoint could not do on a fast machine."""

    def __init__(self, log_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.log_dir = log_dir

    def score(self, samples):
        gate = os.environ.get(HANG_ONCE_EXISTS)
        if gate and os.path.exists(gate):
            open(gate + ".hanging", "w").close()
            time.sleep(3600)
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
