"""One option language for every command line of the project.

* Names are snake_case (``--sandbox_timeout_s``, ``--data_dir``); a value in seconds ends in ``_s``.
* 0 means "no limit" / "never" / "all" (``--max_steps 0``, ``--save_steps 0``, ``--limit 0``).
* Options shared by several commands are generated from the config dataclass that holds them
  (``add_dataclass_options``: one flag per field, with its type, default and help) and read back into
  that dataclass (``dataclass_from_args``), so every command spells and documents them the same way.
* An old spelling keeps working for one release (``add_deprecated``): it parses, warns (a
  ``DeprecationWarning`` and one line on stderr, which scripts show) naming the new spelling, and is
  hidden from ``--help``. An old "no limit" value (-1) maps to the new one (0) with the same warning.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
import warnings
from typing import Any, Callable, Literal

_MISSING = object()


class ConfigError(ValueError):
    """A bad option value; the message names the option."""


# ---- warnings ----------------------------------------------------------------------------------

def warn_deprecated(old: str, new: str) -> None:
    """``old`` (a spelling or a value) still works this release; say what to write instead."""
    msg = f"{old} is deprecated and will be removed in the next release; use {new}"
    warnings.warn(msg, DeprecationWarning, stacklevel=3)
    print(f"warning: {msg}", file=sys.stderr, flush=True)  # DeprecationWarning is hidden in scripts


def legacy_value(option: str, value: Any, legacy: dict | None) -> Any:
    """``value`` of ``option``, with an old special value (e.g. -1 for "never") mapped to the new one."""
    if legacy and not isinstance(value, bool) and value in legacy:
        warn_deprecated(f"{option} {value}", f"{option} {legacy[value]}")
        return legacy[value]
    return value


def legacy_int(option: str, legacy: dict[int, int]) -> Callable[[str], int]:
    """An argparse ``type`` for an int option whose old special values (``{-1: 0}``) still parse."""
    def parse(text: str) -> int:
        return legacy_value(option, int(text), legacy)
    parse.__name__ = "int"  # argparse names the type in its error message
    return parse


# ---- values ------------------------------------------------------------------------------------

def coerce(name: str, typ: Any, value: Any) -> Any:
    """``value`` (a command-line word or words, or a YAML value) as the field type ``typ``.

    Bools take 1/0/true/false/yes/no; lists take several words, one word "a,b", or JSON; an optional
    field takes None."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"--{name}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "None":
            return None
        return coerce(name, next(a for a in args if a is not type(None)), value)
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes")
            return bool(value)
        if typ in (int, float, str):
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return typ(value)
        if typ in (list, dict) or origin in (list, tuple, dict):
            if isinstance(value, str):
                value = (json.loads(value) if value.strip().startswith(("[", "{"))
                         else [v for v in value.split(",") if v])
            want = dict if (typ is dict or origin is dict) else (list, tuple)
            if not isinstance(value, want):
                raise ValueError(value)
            if origin in (list, tuple) and args and args[0] is not Ellipsis:
                value = [coerce(name, args[0], v) for v in value]
            return tuple(value) if origin is tuple else value
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ConfigError(f"--{name}: cannot read {value!r} as {getattr(typ, '__name__', typ)}") from None
    return value


# ---- options generated from dataclass fields ---------------------------------------------------

class FieldOption(argparse.Action):
    """One option generated from a dataclass field. Reads its words as the field's type (or, with
    ``deferred``, keeps the raw words for the caller to read after other layers such as YAML)."""

    def __init__(self, option_strings, dest, field_type=str, field_name="", owner=None, legacy=None,
                 deferred=False, **kw):
        super().__init__(option_strings, dest, **kw)
        self.field_type, self.field_name, self.owner = field_type, field_name, owner
        self.legacy, self.deferred = legacy, deferred

    def __call__(self, parser, namespace, values, option_string=None):
        if isinstance(values, list) and len(values) == 1:
            values = values[0]  # one word: "a,b" or JSON, as in YAML
        if not self.deferred:
            try:
                values = legacy_value(f"--{self.dest}", coerce(self.dest, self.field_type, values), self.legacy)
            except ConfigError as e:
                parser.error(str(e))
        setattr(namespace, self.dest, values)


def field_flag_kwargs(typ: Any) -> dict:
    """How a field of type ``typ`` takes its words: a bool flag alone means true, a list takes many."""
    if typ is bool:
        return {"nargs": "?", "const": "true"}
    origin = typing.get_origin(typ)
    if origin in (list, tuple) or typ in (list, tuple):
        return {"nargs": "*"}  # --reward tests rm, or --reward tests,rm
    if origin is Literal:
        return {"choices": typing.get_args(typ)}
    return {}


def opt(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - the word argparse uses
    """A config dataclass field with its ``help`` (and e.g. ``legacy``) metadata, which
    ``add_dataclass_options`` reads; a list or dict default is copied for each instance."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def add_dataclass_options(parser: Any, cls: type, *, prefix: str = "", defaults: dict | None = None,
                          extra_names: Callable[[str], list[str]] | None = None,
                          deferred: bool = False) -> list[argparse.Action]:
    """One ``--{prefix}{field}`` option per field of the dataclass ``cls``, typed and documented from
    the field (its ``help`` metadata; a ``legacy`` metadata maps old special values, e.g. {-1: 0}).

    ``defaults`` overrides field defaults for this command; ``extra_names(option)`` gives more option
    strings of the same option (e.g. OpenRLHF's dotted names); ``deferred``: no default in the
    namespace and the raw words kept (the caller reads them with ``coerce`` after its other layers)."""
    hints = typing.get_type_hints(cls)
    base = cls()
    defaults = defaults or {}
    actions = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        typ = hints[f.name]
        default = defaults.get(f.name, getattr(base, f.name))
        help_text = (f.metadata.get("help", "") if f.metadata else "").replace("%", "%%")
        if deferred:  # the default is not in the namespace, so the help says it
            help_text += f" (default: {default!r})".replace("%", "%%")
        kw = field_flag_kwargs(typ)
        if deferred:
            kw.pop("choices", None)  # the raw word is checked later, with the option named
        actions.append(parser.add_argument(
            f"--{name}", *(extra_names(name) if extra_names else []), dest=name, action=FieldOption,
            field_type=typ, field_name=f.name, owner=cls, legacy=f.metadata.get("legacy") if f.metadata else None,
            deferred=deferred, default=argparse.SUPPRESS if deferred else default,
            metavar=None if "choices" in kw else "V", help=help_text, **kw))
    return actions


def dataclass_from_args(cls: type, args: argparse.Namespace, *, prefix: str = "", **overrides: Any) -> Any:
    """The dataclass ``cls`` from the options ``add_dataclass_options`` added (absent ones keep the
    field default), then ``overrides``."""
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls) if hasattr(args, prefix + f.name)}
    return cls(**{**values, **overrides})


# ---- old spellings -----------------------------------------------------------------------------

class _DeprecatedSpelling(argparse.Action):
    """A hidden old spelling of another option: warns, then acts as that option would."""

    def __init__(self, option_strings, dest, target=None, new="", convert=None, **kw):
        super().__init__(option_strings, dest, **kw)
        self.target, self.new, self.convert = target, new, convert

    def __call__(self, parser, namespace, values, option_string=None):
        warn_deprecated(option_string, self.new)
        if self.convert is not None:
            values = self.convert(values)
        self.target(parser, namespace, values, option_string)


def find_action(parser: argparse.ArgumentParser, option: str) -> argparse.Action:
    for action in parser._actions:  # noqa: SLF001 - argparse has no public lookup
        if option in action.option_strings:
            return action
    raise KeyError(f"{parser.prog}: no option {option}")


def add_deprecated(parser: Any, old: str, new: str, *, const: Any = _MISSING, type: Any = None,  # noqa: A002
                   convert: Callable[[Any], Any] | None = None, hint: str = "") -> None:
    """``old`` as a hidden spelling of the option ``new`` for one more release.

    ``const``: the old option took no value and meant ``new`` with this value (``--no-progress`` is
    ``--progress_bar false``). ``type``/``convert``: the old option took a value in other units,
    converted to the new option's (``--value_limit_mb 64`` is 64 << 20 bytes). ``hint`` says how to
    write it now, when that is more than the new name."""
    target = find_action(parser, new)
    kw: dict[str, Any] = dict(nargs=target.nargs, const=target.const, type=target.type, choices=target.choices,
                              metavar=target.metavar)
    if const is not _MISSING:
        kw = dict(nargs=0)
        convert = (lambda _words, v=const: v)  # noqa: E731
        alone = target.nargs == 0 or (const is True and target.const == "true")  # the new flag alone says it
        hint = hint or (new if alone else f"{new} {str(const).lower() if isinstance(const, bool) else const}")
    elif type is not None:
        kw.update(type=type, nargs=None, choices=None)
    parser.add_argument(old, dest=target.dest, action=_DeprecatedSpelling, target=target, new=hint or new,
                        convert=convert, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def add_deprecated_spellings(parser: Any, spellings: dict[str, str]) -> None:
    """``add_deprecated`` for each ``{old: new}``."""
    for old, new in spellings.items():
        add_deprecated(parser, old, new)


def add_bool_option(parser: Any, name: str, default: bool, help: str) -> argparse.Action:  # noqa: A002
    """``--name`` alone is true; ``--name false`` (or 0/no) is false, as generated bool options."""
    return parser.add_argument(name, dest=name.lstrip("-"), action=FieldOption, field_type=bool,
                               field_name=name.lstrip("-"), nargs="?", const="true", default=default,
                               metavar="V", help=help)


class HelpFormatter(argparse.HelpFormatter):
    """Lists an option's names once with one metavar: ``--save_steps, --ckpt.save_steps V``."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(action.option_strings) + " " + value


__all__ = ["ConfigError", "FieldOption", "HelpFormatter", "add_bool_option", "add_dataclass_options",
           "add_deprecated", "add_deprecated_spellings", "coerce", "dataclass_from_args", "field_flag_kwargs",
           "find_action", "legacy_int", "legacy_value", "warn_deprecated"]
