"""Configuration in one place: environment variables and their defaults. Flags override them.

PADELLM_CACHE        cache folder (base model download and conversion, training runs); ~/.cache/padellm-ner
PADELLM_BASE_MODEL   a local transformers causal-LM folder to use as the base model instead of SmolLM2
PADELLM_MODEL        a trained PaDeLLM model (folder with adapter/weights) instead of the shipped one
PADELLM_THREADS      torch CPU threads (default: all cores)
PADELLM_DTYPE        engine weights: auto (bf16 on a GPU or a CPU with native bf16, else fp32), float32,
                     bfloat16 or int8
PADELLM_CPU_NATIVE_BF16  overrides the CPU probe behind `auto`: 1 resolves as on an AVX512-BF16/AMX CPU (bf16),
                     0 as on an AVX2-only one (fp32); unset: the probe decides. For running a machine kind's
                     configuration on the other kind (bf16 is emulated, and slower, where it is not native)
PADELLM_LOOKUP_TOKENS  prompt-lookup draft length of the embedded engine (0: off; default 4)
PADELLM_KAFKA_SASL_PASSWORD  the stream's SASL password (rather than a flag, which `ps` shows)
PADELLM_VLLM_API_KEY the bearer token of a vLLM server started with --api-key (worker --backend vllm)
PADELLM_LOG_FORMAT   json (default) or text
PADELLM_LOG_LEVEL    DEBUG, INFO (default), WARNING, ERROR

Nothing else in padellm-ner reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("PADELLM_CACHE", Path.home() / ".cache" / "padellm-ner")).expanduser()


def base_model_override() -> Path | None:
    value = os.environ.get("PADELLM_BASE_MODEL")
    return Path(value).expanduser() if value else None


def model_override() -> Path | None:
    value = os.environ.get("PADELLM_MODEL")
    return Path(value).expanduser() if value else None


def threads() -> int | None:
    value = os.environ.get("PADELLM_THREADS")
    return int(value) if value else None


def dtype_override() -> str | None:
    return os.environ.get("PADELLM_DTYPE") or None


def cpu_native_bf16_override() -> bool | None:
    value = os.environ.get("PADELLM_CPU_NATIVE_BF16")
    if not value:
        return None
    if value not in ("0", "1"):
        raise ValueError(f"PADELLM_CPU_NATIVE_BF16={value!r}: expected 0 or 1")
    return value == "1"


def lookup_tokens(default: int) -> int:
    value = os.environ.get("PADELLM_LOOKUP_TOKENS")
    return int(value) if value else default


def kafka_sasl_password() -> str | None:
    return os.environ.get("PADELLM_KAFKA_SASL_PASSWORD") or None


def vllm_api_key() -> str | None:
    return os.environ.get("PADELLM_VLLM_API_KEY") or None


def log_format() -> str:
    return os.environ.get("PADELLM_LOG_FORMAT", "json")


def log_level() -> str:
    return os.environ.get("PADELLM_LOG_LEVEL", "INFO")
