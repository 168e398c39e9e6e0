"""The sandbox's command-line options, the same in every command that runs a pool (``python -m
sandbox``, ``python -m data_prep filter|score``, ``python -m apps.bon_eval``, ``python -m trainer``):
one ``--sandbox_<field>`` option per ``SandboxConfig`` field, generated from the dataclass."""
from __future__ import annotations

import argparse
from typing import Any

from common.options import add_dataclass_options, add_deprecated, dataclass_from_args

from .types import SandboxConfig

PREFIX = "sandbox_"
# The spellings python -m sandbox run and python -m data_prep used before, kept for one release.
OLD_FLAGS = {"--UNSAFE-no-isolation": "--sandbox_unsafe_no_isolation"}  # took no value: meant true
OLD_SPELLINGS = {"--workers": "--sandbox_workers", "--timeout-s": "--sandbox_timeout_s",
                 "--program-timeout-s": "--sandbox_program_timeout_s", "--memory-mb": "--sandbox_memory_mb",
                 "--cgroups": "--sandbox_cgroups", **OLD_FLAGS}


def option_names() -> list[str]:
    """Every sandbox option, as each command spells it."""
    import dataclasses

    return [f"--{PREFIX}{f.name}" for f in dataclasses.fields(SandboxConfig)]


def add_sandbox_options(parser: Any, *, old_spellings: dict[str, str] | None = None, **defaults: Any) -> None:
    """The ``--sandbox_*`` options in a "sandbox" group; ``defaults`` override the field defaults for
    this command (e.g. ``workers=os.cpu_count()``); ``old_spellings`` ({old: new}) stay as hidden,
    warning aliases."""
    g = parser.add_argument_group("sandbox")
    add_dataclass_options(g, SandboxConfig, prefix=PREFIX, defaults=defaults)
    for old, new in (old_spellings or {}).items():
        if old in OLD_FLAGS:
            add_deprecated(g, old, new, const=True)
        else:
            add_deprecated(g, old, new)


def problems(cfg: SandboxConfig) -> list[tuple[str, str]]:
    """(option, what is wrong) for the values no pool can run with."""
    out = []
    if cfg.workers < 1:
        out.append((f"{PREFIX}workers", "must be >= 1"))
    if not cfg.timeout_s > 0:
        out.append((f"{PREFIX}timeout_s", "must be > 0"))
    if cfg.memory_mb < 16:
        out.append((f"{PREFIX}memory_mb", "must be >= 16"))
    if not cfg.program_timeout_s > 0:
        out.append((f"{PREFIX}program_timeout_s", "must be > 0"))
    return out


def sandbox_config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None,
                             **overrides: Any) -> SandboxConfig:
    """The ``SandboxConfig`` of the parsed ``--sandbox_*`` options; with ``parser``, a bad value is
    a usage error naming the option."""
    cfg = dataclass_from_args(SandboxConfig, args, prefix=PREFIX, **overrides)
    bad = problems(cfg)
    if bad and parser is not None:
        parser.error("; ".join(f"--{name} {msg}" for name, msg in bad))
    return cfg


__all__ = ["OLD_SPELLINGS", "PREFIX", "add_sandbox_options", "option_names", "problems", "sandbox_config_from_args"]
