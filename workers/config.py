"""The workers' configuration in one place: typed settings of the embedded engine and of `padellm-ner worker`,
built from flags and the environment (vLLM's `EngineArgs` pattern: `add_cli_args` declares each flag and its one
default, `from_cli_args` builds the dataclass). Runtime code takes these dataclasses, never an argparse namespace."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from enum import Enum

from padellm_ner import config as environment
from padellm_ner.args import (
    add_health_port_arg,
    add_metrics_args,
    add_tls_server_args,
    non_negative,
    positive,
    tls_server_files,
)
from padellm_ner.grpc_common import TlsFiles
from padellm_ner.validation import DEFAULT_MAX_WINDOW_CHARS, DEFAULT_MAX_WINDOW_TOKENS

from .engine.batching import (  # torch-free
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FORWARD_TOKENS,
    DEFAULT_MAX_PREFILL_TOKENS,
    DEFAULT_PREFIX_CACHE_TOKENS,
)
from .engine.lookup import DEFAULT_LOOKUP_TOKENS  # torch-free

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "int8")  # workers/engine/precision.py: Precision


class BackendKind(str, Enum):
    EMBEDDED = "embedded"  # the torch engine in this process
    TGI = "tgi"  # a text-generation-inference server over HTTP
    VLLM = "vllm"  # an OpenAI-compatible completions server (vLLM) over HTTP


@dataclass(frozen=True)
class EngineArgs:
    """Which model the embedded engine loads, and how it runs. `None` means: the environment's choice (see
    `padellm_ner/config.py`), else the default (the shipped model, SmolLM2, the best device and precision)."""

    model: str | None = None
    base_model: str | None = None
    device: str | None = None
    dtype: str | None = None
    schema: str | None = None
    lookup_tokens: int = DEFAULT_LOOKUP_TOKENS
    threads: int | None = None

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", help="a PaDeLLM model folder (default: PADELLM_MODEL, else the shipped model)")
        parser.add_argument("--base-model", help="a local transformers causal-LM folder (default: SmolLM2-135M)")
        parser.add_argument("--device", help="cpu or cuda (default: cuda where present)")
        parser.add_argument(
            "--dtype",
            choices=DTYPE_CHOICES,
            help="engine precision (default auto: bf16 on a GPU or a CPU with native bf16 (AVX512-BF16, AMX), "
            "else fp32; int8: the linear layers dynamically quantized, CPU only; or PADELLM_DTYPE)",
        )
        parser.add_argument("--schema", help="label schema (default: the model's)")
        parser.add_argument(
            "--lookup-tokens",
            type=non_negative,
            default=None,
            metavar="N",
            help="prompt-lookup decoding: draft up to N tokens of each sequence from the document and "
            "keep what greedy decoding agrees with (same output, fewer forwards); 0 turns it off "
            f"(default: PADELLM_LOOKUP_TOKENS, else {DEFAULT_LOOKUP_TOKENS})",
        )
        parser.add_argument(
            "--threads",
            type=non_negative,
            default=None,
            help="torch CPU threads (default: PADELLM_THREADS, else all cores)",
        )

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> EngineArgs:
        lookup = (
            args.lookup_tokens if args.lookup_tokens is not None else environment.lookup_tokens(DEFAULT_LOOKUP_TOKENS)
        )
        return cls(
            model=args.model,
            base_model=args.base_model,
            device=args.device,
            dtype=args.dtype,
            schema=args.schema,
            lookup_tokens=lookup,
            threads=args.threads or environment.threads(),
        )

    def apply_threads(self) -> None:
        """Set torch's CPU threads (before the first forward)."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def load(self, adapter: bool = True):
        """The engine's model (`workers.engine.loading.EngineModel`)."""
        from .engine.loading import load_engine_model

        return load_engine_model(
            self.model, base_model=self.base_model, device=self.device, adapter=adapter, dtype=self.dtype
        )

    def cli_args(self) -> list[str]:
        """Flags that give another process (a spawned worker) the same engine."""
        return [
            *(["--model", self.model] if self.model else []),
            *(["--base-model", self.base_model] if self.base_model else []),
            *(["--device", self.device] if self.device else []),
            *(["--dtype", self.dtype] if self.dtype else []),
            "--lookup-tokens",
            str(self.lookup_tokens),
        ]


@dataclass(frozen=True)
class TgiArgs:
    """A TGI server as the worker's backend."""

    url: str | None = None
    timeout_s: float = 30.0
    model_name: str = "tgi"
    schemas: tuple[str, ...] = ()

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--tgi-url", help="TGI base URL, e.g. http://127.0.0.1:8080 (backend tgi)")
        parser.add_argument("--tgi-timeout-s", type=float, default=TgiArgs.timeout_s)
        parser.add_argument(
            "--tgi-model-name", default=TgiArgs.model_name, help="model name the worker reports for a TGI backend"
        )
        parser.add_argument(
            "--schemas",
            help="comma-separated label schemas the model server's model serves (backends tgi and vllm; "
            "default: the --model folder's, else read from the model id in TGI's /info, e.g. ..._conll03)",
        )

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> TgiArgs:
        schemas = tuple(name for name in (args.schemas or "").split(",") if name)
        return cls(args.tgi_url, args.tgi_timeout_s, args.tgi_model_name, schemas)


@dataclass(frozen=True)
class VllmArgs:
    """An OpenAI-compatible completions server (vLLM) as the worker's backend. The model's name, version and
    schema come from its folder's padellm.json where the worker can read it (`--model`), else from
    `--vllm-model` and `--schemas`."""

    url: str | None = None
    served_model: str | None = None
    timeout_s: float = 30.0
    max_concurrency: int = 256
    max_prompts: int = 64

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--vllm-url", help="the server's base URL, e.g. http://127.0.0.1:8000 (backend vllm)")
        parser.add_argument(
            "--vllm-model",
            help="the model name the server serves it under (its --served-model-name; default: the name in "
            "the --model folder's padellm.json)",
        )
        parser.add_argument(
            "--vllm-timeout-s",
            type=float,
            default=VllmArgs.timeout_s,
            help="the longest a request may take, retries included, where the caller set no shorter deadline "
            f"(default {VllmArgs.timeout_s:g})",
        )
        parser.add_argument(
            "--vllm-max-concurrency",
            type=positive,
            default=VllmArgs.max_concurrency,
            help="sequences in flight to the server, at most; fewer where its KV cache holds fewer "
            f"(default {VllmArgs.max_concurrency})",
        )
        parser.add_argument(
            "--vllm-max-prompts",
            type=positive,
            default=VllmArgs.max_prompts,
            help=f"prompts sent in one /v1/completions request, at most (default {VllmArgs.max_prompts})",
        )

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> VllmArgs:
        return cls(
            args.vllm_url, args.vllm_model, args.vllm_timeout_s, args.vllm_max_concurrency, args.vllm_max_prompts
        )


@dataclass(frozen=True)
class WorkerArgs:
    """`padellm-ner worker`: a gRPC model worker over a backend."""

    backend: BackendKind = BackendKind.EMBEDDED
    engine: EngineArgs = field(default_factory=EngineArgs)
    tgi: TgiArgs = field(default_factory=TgiArgs)
    vllm: VllmArgs = field(default_factory=VllmArgs)
    host: str = "127.0.0.1"
    port: int = 50061
    batch_window_ms: float = 2.0
    max_batch: int = DEFAULT_MAX_BATCH
    max_forward_tokens: int = DEFAULT_MAX_FORWARD_TOKENS
    max_prefill_tokens: int = DEFAULT_MAX_PREFILL_TOKENS
    prefix_cache_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS
    max_text_chars: int = DEFAULT_MAX_WINDOW_CHARS
    max_window_tokens: int = DEFAULT_MAX_WINDOW_TOKENS
    tgi_api_port: int | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    health_port: int | None = None
    metrics_port: int | None = None
    metrics_host: str | None = None
    max_connection_age_s: float | None = 300.0

    def __post_init__(self) -> None:
        if self.backend is BackendKind.TGI and not self.tgi.url:
            raise ValueError("--backend tgi needs --tgi-url")
        if self.backend is BackendKind.VLLM and not self.vllm.url:
            raise ValueError("--backend vllm needs --vllm-url")

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=WorkerArgs.port)
        parser.add_argument("--host", default=WorkerArgs.host)
        parser.add_argument("--backend", default=WorkerArgs.backend.value, choices=[b.value for b in BackendKind])
        TgiArgs.add_cli_args(parser)
        VllmArgs.add_cli_args(parser)
        parser.add_argument(
            "--tgi-api-port", type=int, help="also serve the backend behind TGI's HTTP API on this port"
        )
        EngineArgs.add_cli_args(parser)
        parser.add_argument(
            "--batch-window-ms",
            type=float,
            default=WorkerArgs.batch_window_ms,
            help="how long the idle engine waits for the other calls of a fan-out "
            f"(embedded; default {WorkerArgs.batch_window_ms:g})",
        )
        parser.add_argument(
            "--max-batch",
            type=positive,
            default=WorkerArgs.max_batch,
            help=f"sequences decoding together, at most (embedded; default {WorkerArgs.max_batch})",
        )
        parser.add_argument(
            "--max-forward-tokens",
            type=positive,
            default=WorkerArgs.max_forward_tokens,
            help="tokens one decoding forward feeds, at most: prompt-lookup drafts are shortened to fit "
            f"(embedded; default {WorkerArgs.max_forward_tokens})",
        )
        parser.add_argument(
            "--max-prefill-tokens",
            type=positive,
            default=WorkerArgs.max_prefill_tokens,
            help="tokens the calls admitted at once may read, about: later calls join at the next step "
            f"(embedded; default {WorkerArgs.max_prefill_tokens})",
        )
        parser.add_argument(
            "--prefix-cache-tokens",
            type=positive,
            default=WorkerArgs.prefix_cache_tokens,
            help="windows' prefix caches kept for the Mention calls that follow, in tokens (about 46 KB a token in "
            "fp32 for the shipped model); too few shows as windows read twice "
            f"(embedded; default {WorkerArgs.prefix_cache_tokens})",
        )
        parser.add_argument(
            "--max-text-chars",
            type=int,
            default=DEFAULT_MAX_WINDOW_CHARS,
            help=f"the longest text one call may carry: one window (default {DEFAULT_MAX_WINDOW_CHARS})",
        )
        parser.add_argument(
            "--max-window-tokens",
            type=int,
            default=DEFAULT_MAX_WINDOW_TOKENS,
            help="the largest window one call may carry, in estimated tokens; at least the service's "
            f"--window-tokens (default {DEFAULT_MAX_WINDOW_TOKENS})",
        )
        add_tls_server_args(parser)
        add_health_port_arg(parser)
        add_metrics_args(parser, None)
        parser.add_argument(
            "--max-connection-age-s",
            type=float,
            default=WorkerArgs.max_connection_age_s,
            help="close each client connection after this age, so that clients balancing over DNS find new "
            f"workers (0: never; default {WorkerArgs.max_connection_age_s:g})",
        )

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> WorkerArgs:
        return cls(
            backend=BackendKind(args.backend),
            engine=EngineArgs.from_cli_args(args),
            tgi=TgiArgs.from_cli_args(args),
            vllm=VllmArgs.from_cli_args(args),
            host=args.host,
            port=args.port,
            batch_window_ms=args.batch_window_ms,
            max_batch=args.max_batch,
            max_forward_tokens=args.max_forward_tokens,
            max_prefill_tokens=args.max_prefill_tokens,
            prefix_cache_tokens=args.prefix_cache_tokens,
            max_text_chars=args.max_text_chars,
            max_window_tokens=args.max_window_tokens,
            tgi_api_port=args.tgi_api_port,
            tls=tls_server_files(args),
            health_port=args.health_port,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            max_connection_age_s=args.max_connection_age_s or None,
        )
