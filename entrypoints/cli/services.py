"""The running system: `worker`, `serve`, `stream`, `kafka` and their benchmarks `bench-serving`, `bench-stream`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from padellm_ner.data import read_corpus
from padellm_ner.logs import configure_logging
from service.config import ServeArgs
from service.orchestrator import MentionStart, Mode
from service.stream.config import StreamArgs
from workers.config import EngineArgs, WorkerArgs

from .options import add_reader_options, add_selection_options, reader_options, schema_of, selected


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import main as worker_main

    configure_logging()
    return worker_main(WorkerArgs.from_cli_args(args))


def cmd_serve(args: argparse.Namespace) -> int:
    from service.main import main as service_main

    configure_logging()
    return service_main(ServeArgs.from_cli_args(args))


def cmd_stream(args: argparse.Namespace) -> int:
    from service.stream.main import main as stream_main

    configure_logging()
    return stream_main(StreamArgs.from_cli_args(args))


def cmd_kafka(args: argparse.Namespace) -> int:
    from service.stream.tools import main as tools_main

    return tools_main(args)


def cmd_bench_serving(args: argparse.Namespace) -> int:
    import asyncio

    from entrypoints.bench import serving as bench
    from padellm_ner.data.units import in_unit

    engine = EngineArgs.from_cli_args(args)  # once: the in-process engine and the spawned workers must agree
    engine.apply_threads()
    corpus = read_corpus(args.data, args.format, **reader_options(args))
    documents, selection = selected(args, in_unit(corpus.documents, args.unit))
    engine_model = engine.load()
    schema = schema_of(engine, engine_model)
    workers = [int(n) for n in args.worker_counts.split(",") if n.strip() and int(n) > 0]
    other_backends = {}
    if args.vllm_url:
        from workers.engine.loading import resolve_model_dir

        name = args.vllm_model or engine_model.info.get("name", "")
        model_dir = resolve_model_dir(engine.model)
        folder = ["--model", str(model_dir)] if model_dir else ["--schemas", schema.name]
        # the worker takes the model's name and version from the folder's padellm.json (the shipped model's)
        other_backends["vllm"] = ["--backend", "vllm", "--vllm-url", args.vllm_url, "--vllm-model", name, *folder]
    report = asyncio.run(
        bench.run(
            engine_model,
            documents,
            schema,
            worker_counts=workers,
            concurrencies=[int(n) for n in args.concurrency.split(",")],
            model_args=engine.cli_args(),
            mode=args.mode,
            lookup_tokens=engine.lookup_tokens,
            mention_start=bench.MentionStart(args.mention_start),
            other_backends=other_backends,
            measure_overhead=not args.no_overhead,
        )
    )
    report["data"] = args.data
    report["unit"] = args.unit
    report["documents_selected"] = selection
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else bench.table(report))
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    import asyncio

    from entrypoints.bench import stream as bench

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
    WorkerArgs.add_cli_args(wk)
    wk.set_defaults(handler=cmd_worker)

    sv = commands.add_parser("serve", help="the public NER gRPC service on the orchestrator")
    ServeArgs.add_cli_args(sv)
    sv.set_defaults(handler=cmd_serve)

    st = commands.add_parser("stream", help="the Kafka stream: documents in, entity records out")
    StreamArgs.add_cli_args(st)
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

    bs = commands.add_parser(
        "bench-serving",
        help="gRPC + orchestration overhead, documents/s with 1 and 2 workers, and the embedded engine against vLLM",
    )
    bs.add_argument("--data", required=True)
    add_reader_options(bs)
    add_selection_options(bs, 100)
    EngineArgs.add_cli_args(bs)
    bs.add_argument("--mode", default=Mode.MULTI.value, choices=[m.value for m in Mode])
    bs.add_argument(
        "--worker-counts", default="1,2", help="comma-separated numbers of worker processes (0: skip that part)"
    )
    bs.add_argument(
        "--vllm-url",
        help="a vLLM server serving the same model (scripts/vllm.sh start): measure its backend beside the "
        "embedded engine, on the same documents at each --concurrency",
    )
    bs.add_argument("--vllm-model", help="the model's name on that server (default: the model folder's name)")
    bs.add_argument(
        "--no-overhead", action="store_true", help="leave out the in-process vs gRPC + orchestrator comparison"
    )
    bs.add_argument("--mention-start", default=MentionStart.PER_LABEL.value, choices=[m.value for m in MentionStart])
    bs.add_argument(
        "--unit",
        default="sentence",
        choices=("sentence", "document"),
        help="the corpus's sentences, or the documents they came from (CoNLL -DOCSTART- groups)",
    )
    bs.add_argument(
        "--concurrency",
        default="8",
        metavar="C[,C]",
        help="documents in flight in the throughput runs, e.g. 1,4,16 (default 8)",
    )
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
