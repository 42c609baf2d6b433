"""The embedded model on text and corpora: `recognize`, `eval` and `bench`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

from padellm_ner.args import add_window_args, window_policy
from padellm_ner.core import DEDUP_POLICIES, scores_table
from padellm_ner.data import read_corpus
from workers.config import EngineArgs

from .options import (
    add_reader_options,
    add_selection_options,
    engine_for,
    reader_options,
    schema_of,
    selected,
)


def _rounded(probability: float | None) -> float | None:
    return None if probability is None else round(probability, 6)


def _prediction_json(prediction, engine_model, schema, latency_s: float) -> dict:
    """A mention's probability is null where the method gives none (AutoReg_Struct)."""
    return {
        "text": prediction.text,
        "entities": [
            {
                "label": m.label,
                "text": m.text,
                "start": m.start,
                "end": m.end,
                "probability": _rounded(m.probability),
                "window": m.window,
            }
            for m in prediction.mentions
        ],
        "windows": prediction.windows,
        "counts": {
            c.label: {"count": c.count, "probability": round(c.probability, 6), "status": c.status.value}
            for c in prediction.counts
        },
        "removed_by_dedup": [
            {"label": m.label, "text": m.text, "probability": _rounded(m.probability)}
            for m in prediction.removed_by_dedup
        ],
        "not_in_text": [
            {"label": m.label, "text": m.text, "probability": _rounded(m.probability)} for m in prediction.absent
        ],
        "truncated": [{"label": m.label, "text": m.text} for m in prediction.truncated],
        "model": engine_model.info.get("name"),
        "schema": schema.name,
        "latency_ms": round(latency_s * 1000, 2),
    }


def _recognize_remote(args: argparse.Namespace) -> int:
    import asyncio

    import grpc

    from padellm.v1 import ner_pb2, ner_pb2_grpc
    from padellm_ner.grpc_common import TlsFiles, channel
    from service.records import EntityRecord

    async def call():
        async with channel(args.endpoint, TlsFiles(args.tls_cert, args.tls_key, args.tls_ca)) as ch:
            stub = ner_pb2_grpc.NerServiceStub(ch)
            document = ner_pb2.Document(
                id=args.id,
                text=args.text,
                schema=args.schema or "",
                labels=args.labels.split(",") if args.labels else [],
            )
            response = await stub.Recognize(ner_pb2.RecognizeRequest(document=document), timeout=args.timeout)
            return response.record

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
    engine_args = EngineArgs.from_cli_args(args)
    engine_args.apply_threads()
    engine_model, engine = engine_for(args, args.model, adapter=not args.no_adapter)
    schema = schema_of(engine_args, engine_model)
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

    engine_args = EngineArgs.from_cli_args(args)
    engine_args.apply_threads()
    documents, selection = _documents(args)
    engine_model, engine = engine_for(args, args.model, prefix_sharing=not args.no_prefix_sharing)
    schema = schema_of(engine_args, engine_model)
    mode = engine_model.info.get("objective") or "base-model"
    if mode == "padellm":
        mode = PADELLM_NO_PREFIX if args.no_prefix_sharing else PADELLM_PREFIX
    run = run_mode(
        mode, lambda document: engine.recognize(document.text, schema), documents, schema, warmup=args.warmup
    )
    report = {
        "data": args.data,
        "unit": args.unit,
        "join": args.join,
        "window_tokens": engine.window_policy.budget(schema.language),
        "window_unit": args.window_unit,
        "documents_selected": selection,
        "model": engine_model.info.get("name"),
        "mode": mode,
        "schema": schema.name,
        "device": str(engine_model.device),
        "dtype": engine_model.info["dtype"],
        "threads": __import__("torch").get_num_threads(),
        **run.summary(),
    }
    if args.predictions:
        Path(args.predictions).write_text(predictions_jsonl(run, documents), encoding="utf-8")
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        if run.set_scores is not None:
            print(scores_table(run.set_scores))
        print(
            f"micro-F1 {report['micro_f1'] * 100:.2f}  span micro-F1 {report['span_micro_f1'] * 100:.2f}  "
            f"latency mean {report['latency_ms_mean']:.1f} ms (p50 {report['latency_ms_p50']:.1f}, "
            f"p95 {report['latency_ms_p95']:.1f})  tokens/sequence {report['tokens_per_sequence_mean']:.2f}  "
            f"windows/document {report['windows_mean']:.1f}"
        )
    return 0


def _documents(args: argparse.Namespace):
    """The selected documents of --data in the asked unit (sentences, or the documents they came from)."""
    from padellm_ner.data.units import in_unit

    corpus = read_corpus(args.data, args.format, **reader_options(args))
    return selected(args, in_unit(corpus.documents, args.unit, args.join))


def _on_document(recognize, schema):
    """A mode of `bench`: the engine's `recognize` on each document's text."""
    return lambda document: recognize(document.text, schema)


def cmd_bench(args: argparse.Namespace) -> int:
    from workers.engine.autoreg import AutoregStructEngine
    from workers.engine.padellm import PadellmEngine
    from workers.evaluation import (
        AUTOREG_STRUCT,
        FLOOR,
        PADELLM_BY_SENTENCE,
        PADELLM_NO_PREFIX,
        PADELLM_PREFIX,
        Recognizer,
        bench_plot,
        bench_table,
        differing_documents,
        floor_of,
        run_modes,
        sentence_by_sentence,
        speedups,
    )

    engine_args = EngineArgs.from_cli_args(args)
    engine_args.apply_threads()
    documents, selection = _documents(args)
    padellm_model = engine_args.load()
    schema = schema_of(engine_args, padellm_model)
    lookup = engine_args.lookup_tokens
    policy = window_policy(args)
    recognizers: dict[str, Recognizer] = {}
    for mode, sharing in ((PADELLM_PREFIX, True), (PADELLM_NO_PREFIX, False)):
        engine = PadellmEngine(padellm_model, prefix_sharing=sharing, lookup_tokens=lookup, window_policy=policy)
        recognizers[mode] = _on_document(engine.recognize, schema)
        if sharing and args.unit == "document":  # the same engine on the document's corpus sentences, one by one
            recognizers[PADELLM_BY_SENTENCE] = sentence_by_sentence(
                partial(engine.recognize, schema=schema), schema.labels
            )
        if sharing:
            recognizers[FLOOR] = floor_of(engine, schema)
    main_precision = padellm_model.info["dtype"]
    smoothing = {PADELLM_PREFIX: padellm_model.info["smoothing"]} if "smoothing" in padellm_model.info else {}
    # every asked precision is a mode `padellm@P` whatever the machine; the one `--dtype` resolved to here is
    # the `padellm` run itself, reported under both names and decoded once
    precisions = list(dict.fromkeys(args.precisions.split(","))) if args.precisions else []
    for precision in precisions:
        if precision == main_precision:
            continue
        other_model = replace(engine_args, dtype=precision).load()
        other = PadellmEngine(other_model, lookup_tokens=lookup, window_policy=policy)
        recognizers[f"{PADELLM_PREFIX}@{precision}"] = _on_document(other.recognize, schema)
        if "smoothing" in other_model.info:
            smoothing[f"{PADELLM_PREFIX}@{precision}"] = other_model.info["smoothing"]
    if args.skip:
        unknown = set(args.skip.split(",")) - set(recognizers) - {AUTOREG_STRUCT}
        if unknown:
            raise SystemExit(
                f"padellm-ner: error: --skip {','.join(sorted(unknown))}: not a mode of this run "
                f"({', '.join(recognizers)})"
            )
        recognizers = {mode: r for mode, r in recognizers.items() if mode not in args.skip.split(",")}
    if args.baseline_model:
        baseline_model = replace(engine_args, model=args.baseline_model).load()
        baseline = AutoregStructEngine(baseline_model, lookup_tokens=lookup, window_policy=policy)
        recognizers[AUTOREG_STRUCT] = _on_document(baseline.recognize, schema)
    runs = run_modes(recognizers, documents, schema)  # interleaved document by document
    modes = {name: {k: v for k, v in run.summary().items() if k != "per_label"} for name, run in runs.items()}
    for name, summary in modes.items():
        summary["precision"] = name.partition("@")[2] or main_precision
    if main_precision in precisions and PADELLM_PREFIX in modes:
        modes[f"{PADELLM_PREFIX}@{main_precision}"] = {**modes[PADELLM_PREFIX], "same_run_as": PADELLM_PREFIX}
    report = {
        "data": args.data,
        "unit": args.unit,
        "join": args.join,
        "window_tokens": policy.budget(schema.language),
        "window_unit": policy.unit.value,
        "documents": len(documents),
        "documents_selected": selection,
        "device": str(padellm_model.device),
        "dtype": padellm_model.info["dtype"],
        "threads": __import__("torch").get_num_threads(),
        "model": padellm_model.info.get("name"),
        "lookup_tokens": lookup,
        "baseline_model": args.baseline_model,
        "int8_smoothing": smoothing,  # per int8 mode: "smoothquant" (the folder's activation peaks) or "none"
        "modes": modes,
        "speedup": speedups(modes),
    }
    if args.precisions:
        # documents whose entities differ from PaDeLLM's (prefix sharing) in the `dtype` precision
        report["documents_differing_from_" + PADELLM_PREFIX] = differing_documents(
            {
                name: run
                for name, run in runs.items()
                if name.startswith(PADELLM_PREFIX + "@") or name == PADELLM_PREFIX
            },
            PADELLM_PREFIX,
        )
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


def add_unit_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unit",
        default="sentence",
        choices=("sentence", "document"),
        help="score the corpus's sentences (default), or the documents they came from (CoNLL "
        "-DOCSTART- groups, a sentence per line); --limit/--sample count that unit. "
        "bench --unit document adds PaDeLLM on each document's sentences one by one",
    )
    parser.add_argument(
        "--join",
        default="line",
        choices=("line", "space"),
        help="--unit document: the sentences of a document each on a line of its own (default), or run on with "
        "one space between them, as text extracted from HTML or PDF arrives (Chinese takes no separator)",
    )


def register(commands) -> None:
    """`recognize`, `eval` and `bench`."""
    rec = commands.add_parser("recognize", help="recognize the entities of one text with the embedded model")
    rec.add_argument("text")
    rec.add_argument("--labels", help="comma-separated labels (default: all of the schema)")
    EngineArgs.add_cli_args(rec)
    rec.add_argument("--dedup", default="keep-max", choices=DEDUP_POLICIES)
    add_window_args(rec)
    rec.add_argument("--no-adapter", action="store_true", help="the bare base model (for checks)")
    rec.add_argument("--json", action="store_true")
    rec.add_argument("--endpoint", help="HOST:PORT of a running NER service: call it instead of the embedded model")
    rec.add_argument("--id", default="cli-1", help="document id sent to the service")
    rec.add_argument("--timeout", type=float, default=60.0, help="deadline of the service call (s)")
    rec.add_argument("--tls-ca", help="CA that signed the service's certificate (turns TLS on)")
    rec.add_argument("--tls-cert", help="client certificate for mutual TLS")
    rec.add_argument("--tls-key", help="client key for mutual TLS")
    rec.set_defaults(handler=cmd_recognize)

    ev = commands.add_parser("eval", help="predict a corpus with the embedded model and score it")
    ev.add_argument("--data", required=True)
    add_reader_options(ev)
    add_selection_options(ev, None)
    EngineArgs.add_cli_args(ev)
    ev.add_argument("--dedup", default="keep-max", choices=DEDUP_POLICIES)
    ev.add_argument("--no-prefix-sharing", action="store_true", help="encode every prompt on its own")
    add_unit_option(ev)
    add_window_args(ev)
    ev.add_argument("--warmup", type=int, default=2, help="documents decoded first and not measured")
    ev.add_argument("--predictions", help="write the predictions (JSONL with offsets and probabilities) here")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=cmd_eval)

    be = commands.add_parser("bench", help="PaDeLLM with and without prefix sharing and AutoReg_Struct, side by side")
    be.add_argument("--data", required=True)
    add_reader_options(be)
    add_selection_options(be, 300)
    EngineArgs.add_cli_args(be)
    be.add_argument("--baseline-model", help="an AutoReg_Struct model folder (models/autoreg-struct-conll03)")
    add_unit_option(be)
    add_window_args(be)
    be.add_argument("--skip", metavar="MODE[,MODE]", help="leave modes out, e.g. padellm-no-prefix-sharing")
    be.add_argument(
        "--precisions",
        metavar="P[,P]",
        help="also run PaDeLLM (prefix sharing) in these precisions (float32, bfloat16, int8), side by side "
        "with the --dtype one, counting the documents whose entities differ from it; each is the mode "
        "padellm@P (the one --dtype resolved to is the padellm run itself, decoded once)",
    )
    be.add_argument("--output-dir", default="runs/bench", help="where bench.json and bench.png go")
    be.add_argument("--json", action="store_true")
    be.set_defaults(handler=cmd_bench)
