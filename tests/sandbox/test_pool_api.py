from sandbox import Job, SandboxPool
from sandbox.types import SandboxConfig


def test_overrides_do_not_change_the_callers_config():
    cfg = SandboxConfig()
    default_timeout = cfg.timeout_s
    with SandboxPool(cfg, workers=1, timeout_s=default_timeout + 1.5) as pool:
        assert pool.cfg.timeout_s == default_timeout + 1.5 and pool.cfg.workers == 1
        assert pool.run(Job("a", "def f(x):\n    return x\n", ["assert f(1) == 1"])).all_passed
    assert cfg.timeout_s == default_timeout  # a config shared by several pools stays as it was
