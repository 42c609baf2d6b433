"""The running system: `worker`, `serve`, `stream`, `kafka` and their benchmarks `bench-serving`, `bench-stream`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core import DEDUP_POLICIES
from ..data import read_corpus
from ..validation import DEFAULT_MAX_TEXT_CHARS, DEFAULT_MAX_WINDOW_CHARS, DEFAULT_MAX_WINDOW_TOKENS
from .options import (
    add_model_options, add_reader_options, add_tls_server_options, add_window_options, lookup_tokens,
    reader_options, schema_of, set_threads,
)


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import main as worker_main

    from ..logs import configure_logging

    configure_logging()
    set_threads()
    return worker_main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.main import main as service_main

    from ..logs import configure_logging

    configure_logging()
    return service_main(args)


def cmd_stream(args: argparse.Namespace) -> int:
    import os

    from service.stream.main import main as stream_main

    args.sasl_password = args.sasl_password or os.environ.get("PADELLM_KAFKA_SASL_PASSWORD")

    from ..logs import configure_logging

    configure_logging()
    return stream_main(args)


def cmd_kafka(args: argparse.Namespace) -> int:
    from service.stream.tools import main as tools_main

    return tools_main(args)


def cmd_bench_serving(args: argparse.Namespace) -> int:
    import asyncio

    from service import bench
    from workers.engine.loading import load_engine_model

    set_threads()
    from ..data.units import in_unit

    corpus = read_corpus(args.data, args.format, **reader_options(args))
    texts = [d.text for d in in_unit(corpus.documents, args.unit)[: args.limit]]
    engine_model = load_engine_model(args.model, base_model=args.base_model, device=args.device, dtype=args.dtype)
    schema = schema_of(args, engine_model)
    workers = [int(n) for n in args.worker_counts.split(",")]
    lookup = lookup_tokens(args)  # read once: the in-process engine and the spawned workers must agree
    model_args = [*(["--model", args.model] if args.model else []),
                  *(["--base-model", args.base_model] if args.base_model else []),
                  *(["--dtype", args.dtype] if args.dtype else []), "--lookup-tokens", str(lookup)]
    report = asyncio.run(bench.run(engine_model, texts, schema, worker_counts=workers, concurrency=args.concurrency,
                                   model_args=model_args, mode=args.mode, lookup_tokens=lookup,
                                   mention_start=bench.MentionStart(args.mention_start)))
    report["data"] = args.data
    report["unit"] = args.unit
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else bench.table(report))
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    import asyncio

    from service.stream import bench

    corpus = read_corpus(args.data, args.format, **reader_options(args))
    docs = [{"id": f"bench-{i}", "text": d.text} for i, d in enumerate(corpus.documents[: args.limit])]
    report = asyncio.run(bench.run(args.bootstrap, args.workers.split(","), docs, args.concurrency, args.partitions))
    report["data"] = args.data
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else bench.table(report))
    return 0


def register(commands) -> None:
    """`worker`, `serve`, `stream`, `kafka`, `bench-serving` and `bench-stream`."""
    wk = commands.add_parser("worker", help="a model worker: gRPC Count/Mention/Extract over a backend")
    wk.add_argument("--port", type=int, default=50061)
    wk.add_argument("--host", default="127.0.0.1")
    wk.add_argument("--backend", default="embedded", choices=("embedded", "tgi"))
    wk.add_argument("--tgi-url", help="TGI base URL, e.g. http://127.0.0.1:8080 (backend tgi)")
    wk.add_argument("--tgi-timeout-s", type=float, default=30.0)
    wk.add_argument("--tgi-model-name", default="tgi", help="model name the worker reports for a TGI backend")
    wk.add_argument("--tgi-api-port", type=int, help="also serve the backend behind TGI's HTTP API on this port")
    add_model_options(wk)
    wk.add_argument("--batch-window-ms", type=float, default=2.0, help="micro-batching window (embedded)")
    wk.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_WINDOW_CHARS,
                    help=f"the longest text one call may carry: one window (default {DEFAULT_MAX_WINDOW_CHARS})")
    wk.add_argument("--max-window-tokens", type=int, default=DEFAULT_MAX_WINDOW_TOKENS,
                    help="the largest window one call may carry, in estimated tokens; at least the service's "
                         f"--window-tokens (default {DEFAULT_MAX_WINDOW_TOKENS})")
    wk.add_argument("--schemas", help="comma-separated label schemas the TGI model serves (default: read from the "
                                      "model id in TGI's /info, e.g. ..._conll03)")
    add_tls_server_options(wk)
    wk.set_defaults(handler=cmd_worker)

    sv = commands.add_parser("serve", help="the public NER gRPC service on the orchestrator")
    sv.add_argument("--port", type=int, default=50051)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--workers", required=True, help="HOST:PORT[,HOST:PORT...] of model workers")
    sv.add_argument("--mode", default="multi", choices=("multi", "batch"))
    sv.add_argument("--no-affinity", action="store_true", help="round-robin every call instead of per document")
    sv.add_argument("--schema", default="conll03", help="label schema of requests that name none")
    sv.add_argument("--deadline-s", type=float, default=30.0, help="deadline of each worker call")
    sv.add_argument("--max-in-flight", type=int, default=256, help="worker calls in flight, all documents together")
    sv.add_argument("--dedup", default="keep-max", choices=DEDUP_POLICIES)
    sv.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS,
                    help=f"the longest document accepted, in characters (default {DEFAULT_MAX_TEXT_CHARS:,})")
    add_window_options(sv)
    sv.add_argument("--mention-start", default="per-label", choices=("per-label", "after-counts"),
                    help="multi mode: ask a label's mentions as soon as its count is known, or after every count")
    sv.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    add_tls_server_options(sv)
    sv.add_argument("--worker-tls-ca", help="CA of the workers' certificates (TLS to workers)")
    sv.add_argument("--worker-tls-cert", help="client certificate towards the workers (mutual TLS)")
    sv.add_argument("--worker-tls-key")
    sv.set_defaults(handler=cmd_serve)

    st = commands.add_parser("stream", help="the Kafka stream: documents in, entity records out")
    st.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]")
    st.add_argument("--input-topic", required=True)
    st.add_argument("--output-topic", required=True)
    st.add_argument("--dead-letter-topic", help="default: INPUT_TOPIC.dead-letter")
    st.add_argument("--group-id", default="padellm-ner")
    st.add_argument("--workers", required=True, help="HOST:PORT[,HOST:PORT...] of model workers")
    st.add_argument("--mode", default="multi", choices=("multi", "batch"))
    st.add_argument("--schema", default="conll03", help="label schema of documents that name none")
    st.add_argument("--exactly-once", action="store_true", help="Kafka transactions (read outputs read_committed)")
    st.add_argument("--transactional-id", help="stable per instance (default: padellm-ner-GROUP)")
    st.add_argument("--max-in-flight", type=int, default=64)
    st.add_argument("--max-in-flight-per-partition", type=int, default=16)
    st.add_argument("--max-message-bytes", type=int, default=1_000_000,
                    help="the largest input record accepted (default 1,000,000 bytes, under Kafka's default limit)")
    st.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS,
                    help=f"the longest document accepted, in characters (default {DEFAULT_MAX_TEXT_CHARS:,})")
    add_window_options(st)
    st.add_argument("--mention-start", default="per-label", choices=("per-label", "after-counts"))
    st.add_argument("--deadline-s", type=float, default=30.0)
    st.add_argument("--create-topics", action="store_true", help="create missing topics (with --partitions)")
    st.add_argument("--partitions", type=int, default=4)
    st.add_argument("--metrics-port", type=int)
    st.add_argument("--metrics-host", default="127.0.0.1")
    st.add_argument("--security-protocol", default="PLAINTEXT", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    st.add_argument("--sasl-mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    st.add_argument("--sasl-username")
    st.add_argument("--sasl-password", help="prefer the environment: PADELLM_KAFKA_SASL_PASSWORD")
    st.add_argument("--ssl-cafile")
    st.add_argument("--ssl-certfile")
    st.add_argument("--ssl-keyfile")
    st.add_argument("--worker-tls-ca")
    st.add_argument("--worker-tls-cert")
    st.add_argument("--worker-tls-key")
    st.set_defaults(handler=cmd_stream)

    kf = commands.add_parser("kafka", help="produce documents to a topic, or read records from one")
    kf_commands = kf.add_subparsers(dest="kafka_command", required=True)
    kp = kf_commands.add_parser("produce", help="one record per line of a JSON-lines file")
    kp.add_argument("file")
    kp.add_argument("--topic", required=True)
    kp.add_argument("--bootstrap", default="127.0.0.1:9092")
    kp.set_defaults(handler=cmd_kafka)
    kc = kf_commands.add_parser("consume", help="print records of a topic from its beginning (read_committed)")
    kc.add_argument("--topic", required=True)
    kc.add_argument("--bootstrap", default="127.0.0.1:9092")
    kc.add_argument("--count", type=int, default=10, help="stop after this many records")
    kc.add_argument("--timeout", type=float, default=120.0)
    kc.add_argument("--pretty", action="store_true")
    kc.set_defaults(handler=cmd_kafka)

    bs = commands.add_parser("bench-serving", help="gRPC + orchestration overhead and documents/s with 1 and 2 workers")
    bs.add_argument("--data", required=True)
    add_reader_options(bs)
    bs.add_argument("--limit", type=int, default=100)
    add_model_options(bs)
    bs.add_argument("--mode", default="multi", choices=("multi", "batch"))
    bs.add_argument("--worker-counts", default="1,2", help="comma-separated numbers of worker processes")
    bs.add_argument("--mention-start", default="per-label", choices=("per-label", "after-counts"))
    bs.add_argument("--unit", default="sentence", choices=("sentence", "document"),
                    help="the corpus's sentences, or the documents they came from (CoNLL -DOCSTART- groups)")
    bs.add_argument("--concurrency", type=int, default=8, help="documents in flight in the throughput runs")
    bs.add_argument("--output", help="also write the JSON report here")
    bs.add_argument("--json", action="store_true")
    bs.set_defaults(handler=cmd_bench_serving)

    bk = commands.add_parser("bench-stream", help="documents/s and latency through Kafka vs direct orchestration")
    bk.add_argument("--data", required=True)
    add_reader_options(bk)
    bk.add_argument("--limit", type=int, default=100)
    bk.add_argument("--bootstrap", default="127.0.0.1:9092")
    bk.add_argument("--workers", required=True, help="HOST:PORT[,HOST:PORT...] of running model workers")
    bk.add_argument("--concurrency", type=int, default=8, help="documents in flight on both paths")
    bk.add_argument("--partitions", type=int, default=4)
    bk.add_argument("--output", help="also write the JSON report here")
    bk.add_argument("--json", action="store_true")
    bk.set_defaults(handler=cmd_bench_stream)

