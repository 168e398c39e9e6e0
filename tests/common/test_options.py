"""The one option language: options generated from dataclasses, old spellings that warn and still
work (hidden from --help), and the same --sandbox_* options in every command."""
from __future__ import annotations

import argparse
import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Literal

import pytest

from common.options import FieldOption, add_dataclass_options, add_deprecated, dataclass_from_args, legacy_int
from sandbox import options as sandbox_options
from sandbox.types import SandboxConfig


@dataclass
class Knobs:
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    steps: int = field(default=0, metadata={"help": "steps (0: no limit)", "legacy": {-1: 0}})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "a mode"})
    on: bool = field(default=False, metadata={"help": "a switch"})
    names: list[str] = field(default_factory=list, metadata={"help": "names"})
    cap: int | None = field(default=None, metadata={"help": "a cap; None: none"})


def knobs_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="knobs", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_options(p, Knobs, prefix="k_", defaults={"rate": 0.25})
    add_deprecated(p, "--old-rate", "--k_rate")
    add_deprecated(p, "--switch-on", "--k_on", const=True)
    add_deprecated(p, "--rate_pct", "--k_rate", type=float, convert=lambda pct: pct / 100)
    return p


def parse_quietly(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, failing on any DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return parser.parse_args(argv)


def parse_warning(parser: argparse.ArgumentParser, argv: list[str], new: str, capsys) -> argparse.Namespace:
    """Parse, expecting a DeprecationWarning and a stderr line that both name ``new``."""
    capsys.readouterr()
    with pytest.warns(DeprecationWarning, match="deprecated") as record:
        args = parser.parse_args(argv)
    assert any(new in str(w.message) for w in record), [str(w.message) for w in record]
    err = capsys.readouterr().err
    assert "deprecated" in err and new in err, err
    return args


def test_options_come_from_the_fields_and_build_the_dataclass_back():
    p = knobs_parser()
    assert dataclass_from_args(Knobs, parse_quietly(p, []), prefix="k_") == Knobs(rate=0.25)
    args = parse_quietly(p, ["--k_rate", "2", "--k_steps", "7", "--k_mode", "b", "--k_on", "--k_names", "x", "y",
                             "--k_cap", "3"])
    assert dataclass_from_args(Knobs, args, prefix="k_") == Knobs(2.0, 7, "b", True, ["x", "y"], 3)
    args = parse_quietly(p, ["--k_on", "false", "--k_names", "x,y", "--k_cap", "None"])
    assert (args.k_on, args.k_names, args.k_cap) == (False, ["x", "y"], None)
    text = p.format_help()
    assert "a rate (default: 0.25)" in " ".join(text.split()) and "{a,b}" in text


@pytest.mark.parametrize("argv", [["--k_rate", "fast"], ["--k_mode", "c"], ["--k_on", "maybe"]])
def test_a_bad_value_is_a_usage_error_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as e:
        knobs_parser().parse_args(argv)
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err


def test_old_spellings_and_values_warn_and_still_work(capsys):
    p = knobs_parser()
    assert parse_warning(p, ["--old-rate", "3"], "--k_rate", capsys).k_rate == 3.0
    assert parse_warning(p, ["--switch-on"], "--k_on", capsys).k_on is True
    assert parse_warning(p, ["--rate_pct", "50"], "--k_rate", capsys).k_rate == 0.5
    assert parse_warning(p, ["--k_steps", "-1"], "--k_steps 0", capsys).k_steps == 0
    text = p.format_help()
    assert "--old-rate" not in text and "--switch-on" not in text and "--rate_pct" not in text
    conv = legacy_int("--n", {-1: 0})
    with pytest.warns(DeprecationWarning, match="--n -1 is deprecated.*use --n 0"):
        assert conv("-1") == 0
    assert conv("5") == 5


# ---- every command -----------------------------------------------------------------------------

def trainer_parser():
    from trainer.config import build_parser

    return build_parser()


def sandbox_parser():
    from sandbox.__main__ import build_parser

    return subparser(build_parser(), "run")


def data_prep_parser(stage):
    from data_prep.__main__ import build_parser

    return subparser(build_parser(), stage)


def bon_eval_parser():
    from apps.bon_eval import build_parser

    return build_parser()


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


PARSERS = {"trainer": trainer_parser, "sandbox run": sandbox_parser,
           "data_prep filter": lambda: data_prep_parser("filter"), "data_prep score": lambda: data_prep_parser("score"),
           "apps.bon_eval": bon_eval_parser}


def test_every_command_has_the_same_generated_sandbox_options():
    want = sandbox_options.option_names()
    assert len(want) == len(dataclasses.fields(SandboxConfig))
    for name, make in PARSERS.items():
        parser = make()
        found = {}
        for action in parser._actions:
            for opt in action.option_strings:
                if opt.startswith("--sandbox_") and action.help != argparse.SUPPRESS:
                    found[opt] = action
        assert sorted(found) == sorted(want), name
        for opt, action in found.items():  # made by the one generator, from SandboxConfig's field
            assert isinstance(action, FieldOption) and action.owner is SandboxConfig, (name, opt)
            assert action.field_name == opt[len("--sandbox_"):], (name, opt)
            assert action.help.startswith(SandboxConfig.__dataclass_fields__[action.field_name].metadata["help"]
                                          .replace("%", "%%")), (name, opt)


OLD = {  # command: (parser, a run with the new spellings, the same run with the old ones, what both give)
    "sandbox run": (sandbox_parser, ["--input", "i", "--output", "o"],
                    ["--sandbox_workers", "3", "--sandbox_timeout_s", "0.5", "--sandbox_memory_mb", "512",
                     "--sandbox_program_timeout_s", "9", "--sandbox_cgroups", "off", "--sandbox_unsafe_no_isolation",
                     "--progress_bar", "false"],
                    ["--workers", "3", "--timeout-s", "0.5", "--memory-mb", "512", "--program-timeout-s", "9",
                     "--cgroups", "off", "--UNSAFE-no-isolation", "--quiet"],
                    dict(sandbox_workers=3, sandbox_timeout_s=0.5, sandbox_memory_mb=512, sandbox_program_timeout_s=9.0,
                         sandbox_cgroups="off", sandbox_unsafe_no_isolation=True, progress_bar=False)),
    "data_prep filter": (lambda: data_prep_parser("filter"), ["--input", "i", "--output", "o"],
                         ["--min_tests", "3", "--oracle_model", "m", "--oracle_field", "program",
                          "--sandbox_workers", "3", "--sandbox_timeout_s", "0.5", "--progress_bar", "false",
                          "--sandbox_unsafe_no_isolation"],
                         ["--min-tests", "3", "--oracle-model", "m", "--oracle-field", "program", "--workers", "3",
                          "--timeout-s", "0.5", "--no-progress", "--UNSAFE-no-isolation"],
                         dict(min_tests=3, oracle_model="m", oracle_field="program", sandbox_workers=3,
                              sandbox_timeout_s=0.5, progress_bar=False, sandbox_unsafe_no_isolation=True)),
    "data_prep score": (lambda: data_prep_parser("score"), ["--input", "i", "--output", "o"],
                        ["--sandbox_memory_mb", "256", "--sandbox_program_timeout_s", "7"],
                        ["--memory-mb", "256", "--program-timeout-s", "7"],
                        dict(sandbox_memory_mb=256, sandbox_program_timeout_s=7.0)),
    "data_prep seeds": (lambda: data_prep_parser("seeds"), ["--input", "i", "--output", "o", "--source", "benchmark"],
                        ["--data_dir", "d"], ["--data-dir", "d"], dict(data_dir="d")),
    "data_prep pairs": (lambda: data_prep_parser("pairs"), ["--input", "i", "--output", "o"],
                        ["--rm_output", "r"], ["--rm-output", "r"], dict(rm_output="r")),
    "data_prep solve": (lambda: data_prep_parser("solve"), ["--input", "i", "--output", "o", "--model", "m"],
                        ["--top_p", "0.5", "--max_new_tokens", "5", "--model_name", "x", "--base_url", "u",
                         "--api_key_env", "K", "--request_timeout_s", "3", "--max_retries", "1",
                         "--price_prompt_per_1k", "0.1", "--price_completion_per_1k", "0.2",
                         "--no_continue_final_message"],
                        ["--top-p", "0.5", "--max-tokens", "5", "--model-name", "x", "--base-url", "u",
                         "--api-key-env", "K", "--timeout", "3", "--max-retries", "1", "--price-prompt-per-1k", "0.1",
                         "--price-completion-per-1k", "0.2", "--no-continue-final-message"],
                        dict(top_p=0.5, max_new_tokens=5, model_name="x", base_url="u", api_key_env="K",
                             request_timeout_s=3.0, max_retries=1, price_prompt_per_1k=0.1, price_completion_per_1k=0.2,
                             no_continue_final_message=True)),
    "data_prep synthesize": (lambda: data_prep_parser("synthesize"), ["--input", "i", "--output", "o", "--model", "m"],
                             ["--top_p", "0.5", "--max_new_tokens", "5"], ["--top-p", "0.5", "--max-tokens", "5"],
                             dict(top_p=0.5, max_new_tokens=5)),
    "apps.bon_eval": (bon_eval_parser, ["--model", "m", "--engine", "hf"],
                      ["--sandbox_timeout_s", "3", "--sandbox_memory_mb", "512", "--sandbox_program_timeout_s", "9",
                       "--sandbox_value_limit_bytes", str(2 << 20)],
                      ["--timeout_s", "3", "--memory_mb", "512", "--program_timeout_s", "9", "--value_limit_mb", "2"],
                      dict(sandbox_timeout_s=3.0, sandbox_memory_mb=512, sandbox_program_timeout_s=9.0,
                           sandbox_value_limit_bytes=2 << 20)),
}


@pytest.mark.parametrize("command", sorted(OLD))
def test_each_command_takes_the_new_spelling_and_still_the_old_one_with_a_warning(command, capsys):
    make, common, new, old, want = OLD[command]
    args = parse_quietly(make(), common + new)
    assert {k: getattr(args, k) for k in want} == want
    capsys.readouterr()
    with pytest.warns(DeprecationWarning) as record:
        args = make().parse_args(common + old)
    assert {k: getattr(args, k) for k in want} == want
    err = capsys.readouterr().err
    old_names = [a for a in old if a.startswith("--")]
    assert len(record) == len(old_names)
    for name, warning in zip(old_names, record):  # each names the old and the new spelling
        assert str(warning.message).startswith(f"{name} is deprecated") and "; use --" in str(warning.message)
        assert f"warning: {warning.message}" in err
    text = make().format_help()
    for name in old_names:  # hidden from --help
        assert f"{name} " not in text and f"{name}," not in text and not text.rstrip().endswith(name), name


def test_train_rm_never_is_zero_and_minus_one_still_works(tmp_path, capsys):
    from apps.train_rm import parse_args

    pairs = tmp_path / "p.jsonl"
    pairs.write_text("")
    base = ["--pretrain", "m", "--dataset", str(pairs)]
    args = parse_args(base)  # the defaults: evaluate at epoch ends, no step checkpoints, never stop early
    assert (args.eval_steps, args.save_steps, args.stop_at_step) == (0, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert parse_args(base + ["--eval_steps", "0", "--save_steps", "0"]).save_steps == 0
    capsys.readouterr()
    with pytest.warns(DeprecationWarning) as record:
        args = parse_args(base + ["--eval_steps", "-1", "--save_steps", "-1"])
    assert (args.eval_steps, args.save_steps) == (0, 0)
    assert [str(w.message).split(";")[1] for w in record] == [" use --eval_steps 0", " use --save_steps 0"]
    assert "use --save_steps 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(base + ["--save_steps", "-2"])
    assert "--save_steps: must be >= 0" in capsys.readouterr().err
