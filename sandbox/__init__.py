"""Secure, fast execution of model-written Python against assert tests (bubblewrap + seccomp)."""
from .isolation import SandboxUnavailable
from .pool import SandboxPool
from .types import Job, Result, SandboxConfig, TestResult

__all__ = ["SandboxPool", "SandboxConfig", "Job", "Result", "TestResult", "SandboxUnavailable"]
