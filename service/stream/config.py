"""The stream's configuration: typed settings of `padellm-ner stream`, built from flags and the environment
(`add_cli_args` declares each flag and its one default, `from_cli_args` builds the dataclass)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from padellm_ner import config as environment
from padellm_ner.args import add_metrics_args, at_least

from ..config import OrchestratorArgs, WorkersArgs
from .kafka_options import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaSecurity
from .messages import DEFAULT_MAX_MESSAGE_BYTES
from .processor import DuplicateIds, StreamConfig

_STREAM = StreamConfig(bootstrap="", input_topic="", output_topic="", dead_letter_topic="")


@dataclass(frozen=True)
class StreamArgs:
    """`padellm-ner stream`: Kafka documents in, entity records out."""

    workers: WorkersArgs
    stream: StreamConfig
    orchestrator: OrchestratorArgs = field(default_factory=OrchestratorArgs)
    create_topics: bool = False
    partitions: int = 4
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        s = _STREAM
        parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]")
        parser.add_argument("--input-topic", required=True)
        parser.add_argument("--output-topic", required=True)
        parser.add_argument("--dead-letter-topic", help="default: INPUT_TOPIC.dead-letter")
        parser.add_argument("--group-id", default=s.group_id)
        WorkersArgs.add_cli_args(parser)
        OrchestratorArgs.add_cli_args(parser)
        parser.add_argument("--schema", default=s.default_schema, help="label schema of documents that name none")
        parser.add_argument(
            "--exactly-once", action="store_true", help="Kafka transactions (read outputs read_committed)"
        )
        parser.add_argument("--transactional-id", help="stable per instance (default: padellm-ner-GROUP)")
        parser.add_argument(
            "--max-in-flight",
            type=at_least(1),
            default=s.max_in_flight,
            help=f"documents in flight, all partitions together (default {s.max_in_flight})",
        )
        parser.add_argument("--max-in-flight-per-partition", type=at_least(1), default=s.max_in_flight_per_partition)
        parser.add_argument(
            "--max-message-bytes",
            type=at_least(1),
            default=DEFAULT_MAX_MESSAGE_BYTES,
            help=f"the largest input record accepted (default {DEFAULT_MAX_MESSAGE_BYTES:,} bytes)",
        )
        parser.add_argument(
            "--max-text-chars",
            type=at_least(1),
            default=s.max_text_chars,
            help=f"the longest document accepted, in characters (default {s.max_text_chars:,})",
        )
        parser.add_argument(
            "--commit-interval-s",
            type=float,
            default=s.commit_interval_s,
            help=f"how often completed offsets are committed (default {s.commit_interval_s:g})",
        )
        parser.add_argument(
            "--overload-backoff-s",
            type=float,
            default=s.overload_backoff_s,
            help="first pause of a partition whose document met overloaded workers; doubles per try "
            f"(default {s.overload_backoff_s:g})",
        )
        parser.add_argument(
            "--shutdown-grace-s",
            type=float,
            default=s.shutdown_grace_s,
            help=f"how long a stop waits for documents in flight (default {s.shutdown_grace_s:g})",
        )
        parser.add_argument(
            "--overload-backoff-max-s",
            type=float,
            default=s.overload_backoff_max_s,
            help=f"the longest overload pause (default {s.overload_backoff_max_s:g})",
        )
        parser.add_argument(
            "--duplicate-ids",
            default=s.duplicate_ids.value,
            choices=[d.value for d in DuplicateIds],
            help="a second record of a document id seen at another offset: process it too (its output carries a "
            "duplicate-of header) or dead-letter it; either way a warning and a metric (default: process)",
        )
        parser.add_argument("--create-topics", action="store_true", help="create missing topics (with --partitions)")
        parser.add_argument("--partitions", type=at_least(1), default=StreamArgs.partitions)
        add_metrics_args(parser, StreamArgs.metrics_host)
        parser.add_argument("--security-protocol", default=KafkaSecurity.protocol, choices=SECURITY_PROTOCOLS)
        parser.add_argument("--sasl-mechanism", choices=SASL_MECHANISMS)
        parser.add_argument("--sasl-username")
        parser.add_argument("--sasl-password", help="prefer the environment: PADELLM_KAFKA_SASL_PASSWORD")
        parser.add_argument("--ssl-cafile")
        parser.add_argument("--ssl-certfile")
        parser.add_argument("--ssl-keyfile")

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> StreamArgs:
        security = KafkaSecurity(
            args.security_protocol,
            args.sasl_mechanism,
            args.sasl_username,
            args.sasl_password or environment.kafka_sasl_password(),
            args.ssl_cafile,
            args.ssl_certfile,
            args.ssl_keyfile,
        )
        stream = StreamConfig(
            bootstrap=args.bootstrap,
            input_topic=args.input_topic,
            output_topic=args.output_topic,
            dead_letter_topic=args.dead_letter_topic or f"{args.input_topic}.dead-letter",
            group_id=args.group_id,
            default_schema=args.schema,
            exactly_once=args.exactly_once,
            transactional_id=args.transactional_id,
            max_in_flight=args.max_in_flight,
            max_in_flight_per_partition=args.max_in_flight_per_partition,
            max_message_bytes=args.max_message_bytes,
            max_text_chars=args.max_text_chars,
            commit_interval_s=args.commit_interval_s,
            overload_backoff_s=args.overload_backoff_s,
            shutdown_grace_s=args.shutdown_grace_s,
            overload_backoff_max_s=args.overload_backoff_max_s,
            duplicate_ids=DuplicateIds(args.duplicate_ids),
            security=security,
        )
        return cls(
            WorkersArgs.from_cli_args(args),
            stream,
            OrchestratorArgs.from_cli_args(args),
            create_topics=args.create_topics,
            partitions=args.partitions,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )
