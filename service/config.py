"""The service's configuration in one place: typed settings of `padellm-ner serve` (the stream's own are in
`stream/config.py`),
built from flags and the environment (`add_cli_args` declares each flag and its one default, `from_cli_args`
builds the dataclass). Runtime code takes these dataclasses, never an argparse namespace."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from padellm_ner.args import (
    add_health_port_arg,
    add_metrics_args,
    add_tls_server_args,
    add_window_args,
    at_least,
    tls_server_files,
    window_policy,
)
from padellm_ner.core import DEDUP_POLICIES, DEFAULT_SCHEMA
from padellm_ner.core.segment import WindowPolicy
from padellm_ner.grpc_common import TlsFiles
from padellm_ner.validation import DEFAULT_MAX_TEXT_CHARS

from .orchestrator import MentionStart, Mode, OrchestratorConfig
from .server import MAX_DOCUMENTS

_ORCHESTRATOR = OrchestratorConfig()


@dataclass(frozen=True)
class WorkersArgs:
    """Where the model workers are and how to reach them."""

    addresses: tuple[str, ...]
    tls: TlsFiles = field(default_factory=TlsFiles)
    affinity: bool = True

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--workers",
            required=True,
            help="model workers: HOST:PORT[,HOST:PORT...], or a gRPC name that resolves to many, balanced "
            "round-robin (dns:///workers-headless.NAMESPACE.svc.cluster.local:50061)",
        )
        parser.add_argument(
            "--no-affinity",
            action="store_true",
            help="round-robin every call instead of keeping a window's calls on one worker",
        )
        parser.add_argument("--worker-tls-ca", help="CA of the workers' certificates (TLS to workers)")
        parser.add_argument("--worker-tls-cert", help="client certificate towards the workers (mutual TLS)")
        parser.add_argument("--worker-tls-key", help="its private key")

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> WorkersArgs:
        addresses = tuple(a.strip() for a in args.workers.split(",") if a.strip())
        if not addresses:
            raise ValueError("--workers names no worker")
        return cls(
            addresses,
            TlsFiles(args.worker_tls_cert, args.worker_tls_key, args.worker_tls_ca),
            affinity=not args.no_affinity,
        )


@dataclass(frozen=True)
class OrchestratorArgs:
    """How documents are fanned out: mode, deadlines, windows, de-duplication."""

    mode: Mode = _ORCHESTRATOR.mode
    call_deadline_s: float = _ORCHESTRATOR.call_deadline_s
    max_in_flight: int = _ORCHESTRATOR.max_in_flight
    max_in_flight_per_document: int = _ORCHESTRATOR.max_in_flight_per_document
    dedup: str = _ORCHESTRATOR.dedup
    window_policy: WindowPolicy = field(default_factory=WindowPolicy)
    mention_start: MentionStart = _ORCHESTRATOR.mention_start
    budget_per_window_s: float = _ORCHESTRATOR.budget_per_window_s
    budget_min_s: float = _ORCHESTRATOR.budget_min_s

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--mode",
            default=_ORCHESTRATOR.mode.value,
            choices=[m.value for m in Mode],
            help="multi: Count and Mention calls; batch: one Extract call per window",
        )
        parser.add_argument(
            "--deadline-s",
            type=float,
            default=_ORCHESTRATOR.call_deadline_s,
            help=f"deadline of each worker call (default {_ORCHESTRATOR.call_deadline_s:g})",
        )
        parser.add_argument(
            "--max-calls-in-flight",
            type=at_least(1),
            default=_ORCHESTRATOR.max_in_flight,
            help=f"worker calls in flight, all documents together (default {_ORCHESTRATOR.max_in_flight})",
        )
        parser.add_argument(
            "--max-calls-per-document",
            type=at_least(1),
            default=_ORCHESTRATOR.max_in_flight_per_document,
            help="a document's share of the calls in flight, so that a long one cannot hold them all "
            f"(default {_ORCHESTRATOR.max_in_flight_per_document})",
        )
        parser.add_argument("--dedup", default=_ORCHESTRATOR.dedup, choices=DEDUP_POLICIES)
        add_window_args(parser)
        parser.add_argument(
            "--mention-start",
            default=_ORCHESTRATOR.mention_start.value,
            choices=[m.value for m in MentionStart],
            help="multi mode: ask a label's mentions as soon as its count is known, or after every count",
        )
        parser.add_argument(
            "--budget-per-window-s",
            type=float,
            default=_ORCHESTRATOR.budget_per_window_s,
            help="a document's time budget per window: its worker calls end with it (with --budget-min-s; 0: none; "
            f"default {_ORCHESTRATOR.budget_per_window_s:g})",
        )
        parser.add_argument(
            "--budget-min-s",
            type=float,
            default=_ORCHESTRATOR.budget_min_s,
            help=f"the smallest budget of a document (default {_ORCHESTRATOR.budget_min_s:g})",
        )

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> OrchestratorArgs:
        return cls(
            mode=Mode(args.mode),
            call_deadline_s=args.deadline_s,
            max_in_flight=args.max_calls_in_flight,
            max_in_flight_per_document=args.max_calls_per_document,
            dedup=args.dedup,
            window_policy=window_policy(args),
            mention_start=MentionStart(args.mention_start),
            budget_per_window_s=args.budget_per_window_s,
            budget_min_s=args.budget_min_s,
        )

    def config(self, model: str, model_version: str) -> OrchestratorConfig:
        return OrchestratorConfig(
            mode=self.mode,
            call_deadline_s=self.call_deadline_s,
            max_in_flight=self.max_in_flight,
            max_in_flight_per_document=self.max_in_flight_per_document,
            dedup=self.dedup,
            model=model,
            model_version=model_version,
            window_policy=self.window_policy,
            mention_start=self.mention_start,
            budget_per_window_s=self.budget_per_window_s,
            budget_min_s=self.budget_min_s,
        )


@dataclass(frozen=True)
class ServeArgs:
    """`padellm-ner serve`: the public NER gRPC API."""

    workers: WorkersArgs
    orchestrator: OrchestratorArgs = field(default_factory=OrchestratorArgs)
    host: str = "127.0.0.1"
    port: int = 50051
    default_schema: str = DEFAULT_SCHEMA
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_documents: int = MAX_DOCUMENTS
    metrics_port: int | None = None
    metrics_host: str | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    health_port: int | None = None

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=ServeArgs.port)
        parser.add_argument("--host", default=ServeArgs.host)
        WorkersArgs.add_cli_args(parser)
        OrchestratorArgs.add_cli_args(parser)
        parser.add_argument("--schema", default=DEFAULT_SCHEMA, help="label schema of requests that name none")
        parser.add_argument(
            "--max-text-chars",
            type=at_least(1),
            default=DEFAULT_MAX_TEXT_CHARS,
            help=f"the longest document accepted, in characters (default {DEFAULT_MAX_TEXT_CHARS:,})",
        )
        parser.add_argument(
            "--max-documents-in-flight",
            type=at_least(1),
            default=MAX_DOCUMENTS,
            help="documents read at once; more are refused at once with RESOURCE_EXHAUSTED and a retry delay "
            f"(default {MAX_DOCUMENTS})",
        )
        add_metrics_args(parser, None)
        add_tls_server_args(parser)
        add_health_port_arg(parser)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> ServeArgs:
        return cls(
            WorkersArgs.from_cli_args(args),
            OrchestratorArgs.from_cli_args(args),
            host=args.host,
            port=args.port,
            default_schema=args.schema,
            max_text_chars=args.max_text_chars,
            max_documents=args.max_documents_in_flight,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host or args.host,
            tls=tls_server_files(args),
            health_port=args.health_port,
        )
