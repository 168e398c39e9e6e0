"""The packages import in one direction: every import, at module level or inside a function, absolute or
relative, names its own package or one below it.

Layers, bottom to top: common, sandbox, rewards, trainer, data_prep, apps. The scanner reads the source
with ``ast`` and imports nothing, so a violation is reported as file:line even when the import would
only run on some path."""
from __future__ import annotations

import ast
import runpy
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("common", "sandbox", "rewards", "trainer", "data_prep", "apps")
RANK = {name: rank for rank, name in enumerate(LAYERS)}
NEVER_IMPORTED = ("tests", "benchmarks", "launch")  # ours too, but no package may depend on them
# The deprecated `python -m` entry points hand over to apps with runpy (no import statement of apps);
# they are the only files allowed to call runpy, each for the one module named here.
RUN_MODULE_SHIMS = {
    "rewards/train_rm/__main__.py": "apps.train_rm",
    "rewards/bon_eval/__main__.py": "apps.bon_eval",
    "trainer/demo_real/__main__.py": "apps.demo_real",
}
RUNPY_CALLS = ("run_module", "run_path")
# Standard-library modules that were renamed between the Pythons we support: the running Python's
# sys.stdlib_module_names knows only its own name (3.12 merged _sha256 into _sha2).
STDLIB_RENAMED = {"_sha2", "_sha256"}
DYNAMIC_IMPORTS = ("import_module", "__import__")


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _literal_arg(node: ast.Call) -> str | None:
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports_of(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file: import statements anywhere in the tree
    (relative ones resolved against the file's package) and importlib/__import__ calls with a literal name.
    ``from pkg import name`` yields ``pkg``: the layer is the top-level package either way."""
    rel = path.relative_to(root)
    package = list(rel.parent.parts)  # a module's and an __init__.py's package alike
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 >= len(package):
                    raise AssertionError(f"{rel}:{node.lineno}: relative import above the top-level package")
                base = ".".join(package[:len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.append((node.lineno, module))
        elif isinstance(node, ast.Call) and _call_name(node) in DYNAMIC_IMPORTS and _literal_arg(node):
            out.append((node.lineno, _literal_arg(node)))
    return sorted(out)


def package_files(root: Path, package: str) -> list[Path]:
    return sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []


def layer_violations(root: Path) -> list[str]:
    """file:line for every import of a higher layer or of tests/benchmarks, and every runpy call that
    is not a listed deprecated entry point handing over to its module."""
    bad = []
    for package in LAYERS:
        for path in package_files(root, package):
            rel = path.relative_to(root).as_posix()
            for line, module in imports_of(path, root):
                top = module.split(".")[0]
                if top in RANK and RANK[top] > RANK[package]:
                    bad.append(f"{rel}:{line}: {package} (layer {RANK[package]}) imports {module} "
                               f"(layer {RANK[top]}); order: {' < '.join(LAYERS)}")
                elif top in NEVER_IMPORTED:
                    bad.append(f"{rel}:{line}: {package} imports {module}; no package may import {top}")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and _call_name(node) in RUNPY_CALLS:
                    target = _literal_arg(node)
                    if RUN_MODULE_SHIMS.get(rel) != target or _call_name(node) != "run_module":
                        bad.append(f"{rel}:{node.lineno}: runpy.{_call_name(node)}({target!r}) outside the "
                                   f"deprecated entry points {sorted(RUN_MODULE_SHIMS)}")
    return bad


def ours_imported(path: Path, root: Path) -> list[str]:
    """file:line: module for every import of one of our packages."""
    rel = path.relative_to(root).as_posix()
    return [f"{rel}:{line}: {module}" for line, module in imports_of(path, root)
            if module.split(".")[0] in (*LAYERS, *NEVER_IMPORTED)]


def test_every_import_points_down():
    bad = layer_violations(ROOT)
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_rewards_base_imports_nothing_of_ours():
    # every reward subclasses it; the reward registry (tests, rm, module:Class) is in rewards/worker.py
    assert ours_imported(ROOT / "rewards" / "base.py", ROOT) == []


def test_sandbox_imports_only_sandbox_and_common():
    bad = [hit for path in package_files(ROOT, "sandbox") for hit in ours_imported(path, ROOT)
           if hit.rsplit(": ", 1)[1].split(".")[0] not in ("sandbox", "common")]
    assert not bad, bad
    harness = ROOT / "sandbox" / "harness.py"  # shipped into the sandbox: the standard library only
    stdlib = sys.stdlib_module_names | STDLIB_RENAMED
    non_stdlib = [(line, m) for line, m in imports_of(harness, ROOT) if m.split(".")[0] not in stdlib]
    assert not non_stdlib, non_stdlib


def test_common_imports_nothing_of_ours_but_itself():
    bad = [hit for path in package_files(ROOT, "common") for hit in ours_imported(path, ROOT)
           if hit.rsplit(": ", 1)[1].split(".")[0] != "common"]
    assert not bad, bad


def test_every_package_has_a_layer_and_is_installed():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - set(NEVER_IMPORTED)
    assert packages == set(LAYERS), f"give each top-level package a layer in tests/test_layers.py: {packages}"
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(include) == sorted(f"{p}*" for p in LAYERS), include


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_the_scanner_flags_planted_upward_imports(tmp_path):
    for package in LAYERS:
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, "common/io.py", "import json\nfrom common import net\n")  # fine: itself
    _write(tmp_path, "rewards/base.py", """\
        import math

        def load():
            from .rm_reward import RMReward  # relative: rewards.rm_reward, ours
            return RMReward
        """)
    _write(tmp_path, "rewards/sub/deep.py", "from ..bon import x\nfrom .. import worker\n")  # fine: rewards
    _write(tmp_path, "sandbox/pool.py", """\
        def plan():
            if True:
                import trainer.net  # in a function, in a branch
        """)
    _write(tmp_path, "trainer/data.py", "import importlib\nmod = importlib.import_module('data_prep.io')\n")
    _write(tmp_path, "data_prep/x.py", "from rewards.base import Reward\nfrom tests.helpers import y\n")
    _write(tmp_path, "trainer/demo_real/__main__.py",
           "import runpy\nrunpy.run_module('apps.demo_real', run_name='__main__')\n")
    _write(tmp_path, "rewards/train_rm/__main__.py", "import runpy\nrunpy.run_module('apps.bon_eval')\n")
    _write(tmp_path, "common/sneaky.py", "import runpy\nrunpy.run_module('apps.x')\n")
    bad = layer_violations(tmp_path)
    assert len(bad) == 5, "\n".join(bad)
    assert bad[0].startswith("common/sneaky.py:2: runpy.run_module('apps.x')")
    assert bad[1].startswith("sandbox/pool.py:3: sandbox (layer 1) imports trainer.net (layer 3)")
    assert bad[2].startswith("rewards/train_rm/__main__.py:2: runpy.run_module('apps.bon_eval')")
    assert bad[3].startswith("trainer/data.py:2: trainer (layer 3) imports data_prep.io (layer 4)")
    assert bad[4].startswith("data_prep/x.py:2: data_prep imports tests.helpers")
    assert ours_imported(tmp_path / "rewards" / "base.py", tmp_path) == ["rewards/base.py:4: rewards.rm_reward"]
    assert ours_imported(tmp_path / "rewards/sub/deep.py", tmp_path) == ["rewards/sub/deep.py:1: rewards.bon",
                                                                         "rewards/sub/deep.py:2: rewards"]


@pytest.mark.parametrize("shim,target", sorted(RUN_MODULE_SHIMS.items()))
def test_deprecated_entry_points_warn_and_hand_over(shim, target, monkeypatch):
    calls = []
    monkeypatch.setattr(runpy, "run_module", lambda *a, **kw: calls.append((a, kw)))
    with pytest.warns(DeprecationWarning, match=f"python -m {target}"):
        runpy.run_path(str(ROOT / shim), run_name="__main__")
    assert calls == [((target,), {"run_name": "__main__", "alter_sys": True})]


def test_deprecated_train_rm_command_still_runs():
    out = subprocess.run([sys.executable, "-m", "rewards.train_rm", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m apps.train_rm")
    assert "DeprecationWarning: python -m rewards.train_rm is deprecated; run python -m apps.train_rm" in out.stderr
