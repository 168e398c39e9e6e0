"""trainer/config.py: OpenRLHF's names (underscored up to 0.10.1, dotted groups from 0.10.2 / 0.11) on
the command line, in YAML and in --help; 0 for "never", OpenRLHF's -1 still read with a warning."""
from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from trainer.config import ALIASES, ConfigError, RLConfig, _flat_fields, _set, build_parser, load_config

ROOT = Path(__file__).resolve().parents[2]
BASE = ["--pretrain", "m"]
# OpenRLHF 0.11 names (openrlhf/cli/train_ppo_ray.py) that are our own section.field spelling already.
SAME_AS_A_SECTION = {"train.seed": "seed", "train.max_epochs": "max_epochs", "train.num_episodes": "num_episodes",
                     "train.colocate_actor_ref": "colocate_actor_ref", "train.async_queue_size": "async_queue_size",
                     "rollout.n_samples_per_prompt": "n_samples_per_prompt", "rollout.temperature": "temperature",
                     "rollout.top_p": "top_p", "data.input_key": "input_key",
                     "data.apply_chat_template": "apply_chat_template", "data.max_samples": "max_samples"}
# A value for each option type, different from every default.
SAMPLE = {int: "17", float: "0.125", str: "xyz", bool: "true"}


def help_names() -> dict[str, set[str]]:
    """Every option of ``python -m trainer --help`` -> all the names its entry lists."""
    out = subprocess.run([sys.executable, "-m", "trainer", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    names = {}
    for line in out.stdout.splitlines():
        if line.startswith("  --"):
            entry = set(re.findall(r"--[\w.]+", re.split(r" {2,}", line.strip())[0]))
            for n in entry:
                names[n] = entry
    return names


def parsed(argv: list[str]) -> RLConfig:
    """The configuration of a command line, not validated (sample values need not make a run)."""
    cfg = RLConfig()
    for name, value in vars(build_parser().parse_args(argv)).items():
        if name != "config":
            _set(cfg, name, value, "command line")
    return cfg


def test_help_lists_both_openrlhf_names_of_every_aliased_option():
    names = help_names()
    for alias, target in {**ALIASES, **SAME_AS_A_SECTION}.items():
        assert f"--{target}" in names, target
        assert f"--{alias}" in names[f"--{target}"], (alias, target, names[f"--{target}"])
    assert {"--sandbox_timeout_s", "--sandbox.timeout_s"} == names["--sandbox_timeout_s"]


def test_every_alias_names_one_of_our_options_and_sets_it():
    fields = _flat_fields()
    defaults = RLConfig()
    for alias, target in ALIASES.items():
        assert target in fields, alias
        assert alias not in fields and f"{fields[target][0]}.{fields[target][1].name}" != alias, alias
        sec, f, typ = fields[target]
        if typ not in SAMPLE:  # lists, literals: below
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # OpenRLHF's names are not deprecated
            cfg = parsed([f"--{alias}", SAMPLE[typ]])
            want = parsed([f"--{target}", SAMPLE[typ]])
        assert getattr(getattr(cfg, sec), f.name) == getattr(getattr(want, sec), f.name), alias
        if typ is not bool:
            assert getattr(getattr(cfg, sec), f.name) != getattr(getattr(defaults, sec), f.name), alias
    cfg = load_config(BASE + ["--algo.advantage.estimator", "rloo", "--algo.kl.estimator", "k3", "--actor.adam.betas",
                              "0.8", "0.9", "--vllm.sync_backend", "objstore", "--rollout.batch_size", "4",
                              "--train.batch_size", "8", "--train.micro_batch_size", "2"])
    assert (cfg.train.advantage_estimator, cfg.train.kl_estimator, cfg.train.adam_betas) == ("rloo", "k3", [0.8, 0.9])
    assert cfg.rollout.vllm_sync_backend == "objstore" and cfg.rollout.rollout_batch_size == 4
    assert (cfg.train.train_batch_size, cfg.train.micro_train_batch_size) == (8, 2)


def test_yaml_takes_openrlhf_groups_nested_at_any_depth(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("actor:\n  model_name_or_path: m\n  adam:\n    lr: 2.0e-6\nalgo:\n  kl:\n    init_coef: 0.5\n"
                    "  advantage: {estimator: group_norm}\nlogger:\n  wandb: {project: p}\n"
                    "reward:\n  model_name_or_path: rm\n  reward_kwargs: {a: 1}\nckpt.save_steps: 7\n"
                    "sandbox:\n  timeout_s: 2\n")
    cfg = load_config(["--config", str(path)])
    assert (cfg.model.pretrain, cfg.train.actor_learning_rate, cfg.train.init_kl_coef) == ("m", 2e-6, 0.5)
    assert cfg.train.advantage_estimator == "group_norm" and cfg.logging.wandb_project == "p"
    assert cfg.model.reward_pretrain == "rm" and cfg.reward.reward_kwargs == {"a": 1}
    assert cfg.checkpoint.save_steps == 7 and cfg.sandbox.timeout_s == 2.0
    path.write_text("algo:\n  kl:\n    no_such_thing: 1\n")
    with pytest.raises(ConfigError, match="unknown option algo.kl.no_such_thing"):
        load_config(BASE + ["--config", str(path)])


def test_zero_is_never_and_openrlhfs_minus_one_still_works_with_a_warning(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        cfg = load_config(BASE + ["--save_steps", "0", "--eval_steps", "0", "--max_steps", "0"])
    assert (cfg.checkpoint.save_steps, cfg.logging.eval_steps, cfg.train.max_steps) == (0, 0, 0)
    capsys.readouterr()
    with pytest.warns(DeprecationWarning) as record:
        cfg = load_config(BASE + ["--ckpt.save_steps", "-1", "--eval.steps", "-1"])
    assert (cfg.checkpoint.save_steps, cfg.logging.eval_steps) == (0, 0)
    assert [str(w.message).split("; ")[1] for w in record] == ["use --save_steps 0", "use --eval_steps 0"]
    assert "warning: --save_steps -1 is deprecated" in capsys.readouterr().err
    path = tmp_path / "c.yaml"
    path.write_text("pretrain: m\neval:\n  steps: -1\n")
    with pytest.warns(DeprecationWarning, match="use --eval_steps 0"):
        assert load_config(["--config", str(path)]).logging.eval_steps == 0
    for option in ("--save_steps", "--eval_steps", "--max_steps"):
        with pytest.raises(ConfigError, match=f"{option}: must be >= 0"):
            load_config(BASE + [option, "-2"])


def test_sandbox_options_are_checked_by_the_sandbox_rules():
    with pytest.raises(ConfigError, match="--sandbox_memory_mb: must be >= 16"):
        load_config(BASE + ["--sandbox_memory_mb", "8"])
    with pytest.raises(ConfigError, match="--sandbox_workers: must be >= 1"):
        load_config(BASE + ["--sandbox.workers", "0"])
