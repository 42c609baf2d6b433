"""Configuration in one place: environment variables and their defaults. Flags override them.

PADELLM_CACHE        cache folder (base model download and conversion, training runs); ~/.cache/padellm-ner
PADELLM_BASE_MODEL   a local transformers causal-LM folder to use as the base model instead of SmolLM2
PADELLM_MODEL        a trained PaDeLLM model (folder with adapter/weights) instead of the shipped one
PADELLM_THREADS      torch CPU threads (default: all cores)
PADELLM_DTYPE        engine weights: auto (bf16 on a GPU, fp32 on the CPU), float32 or bfloat16
PADELLM_LOOKUP_TOKENS  prompt-lookup draft length of the embedded engine (0: off; default 4)
PADELLM_KAFKA_SASL_PASSWORD  the stream's SASL password (rather than a flag, which `ps` shows)
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


def lookup_tokens(default: int) -> int:
    value = os.environ.get("PADELLM_LOOKUP_TOKENS")
    return int(value) if value else default


def kafka_sasl_password() -> str | None:
    return os.environ.get("PADELLM_KAFKA_SASL_PASSWORD") or None


def log_format() -> str:
    return os.environ.get("PADELLM_LOG_FORMAT", "json")


def log_level() -> str:
    return os.environ.get("PADELLM_LOG_LEVEL", "INFO")
