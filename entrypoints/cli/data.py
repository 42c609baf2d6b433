"""Corpora and scores: `data stats|reformulate|convert` and `score`."""

from __future__ import annotations

import argparse
import json
import sys

from padellm_ner.core import DEDUP_POLICIES, reformulate_all, scores_table
from padellm_ner.core.scoring import score_records
from padellm_ner.data import (
    DOCUMENT_FORMATS,
    PREDICTION_FORMATS,
    corpus_stats,
    read_corpus,
    read_predictions,
    stats_table,
    write_columns,
    write_jsonl,
    write_padellm_json,
)
from padellm_ner.data.columns import CHARS, WORDS

from .options import add_reader_options, reader_options, schema_for, write_output


def cmd_data_stats(args: argparse.Namespace) -> int:
    corpus = read_corpus(args.file, args.format, **reader_options(args))
    stats = corpus_stats(corpus)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else stats_table(stats))
    return 0


def cmd_data_reformulate(args: argparse.Namespace) -> int:
    corpus = read_corpus(args.file, args.format, **reader_options(args))
    schema = schema_for(corpus.documents, args.schema)
    print(f"schema {schema.name}: {', '.join(schema.labels)}", file=sys.stderr)
    lines = (json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in reformulate_all(corpus.documents, schema))
    write_output("".join(lines), args.output)
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    corpus = read_corpus(args.file, args.format, **reader_options(args))
    if args.to == "jsonl":
        text = write_jsonl(corpus.documents)
    elif args.to == "padellm-json":
        offsets = "char" if all(d.language == "zh" for d in corpus.documents) else "token"
        text = write_padellm_json(corpus.documents, offsets=offsets, end=args.to_end)
    else:
        text = write_columns(corpus.documents, scheme=args.to_scheme, mode=WORDS if args.to == "conll" else CHARS)
    write_output(text, args.output)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    options = reader_options(args)
    pred_format, records = read_predictions(args.pred, args.pred_format, **options)
    gold = read_corpus(args.gold, args.gold_format, **options).documents if args.gold else None
    scores = score_records(records, gold, dedup=args.dedup, metric=args.metric)
    report = {"pred": args.pred, "pred_format": pred_format, "gold": args.gold, "dedup": args.dedup, **scores.to_json()}
    against = None
    if args.against:
        against_format, against_records = read_predictions(args.against, args.pred_format, **options)
        against = score_records(
            _in_order_of(records, against_records, args.pred, args.against), gold, dedup=args.dedup, metric=args.metric
        )
        report["against"] = {
            "pred": args.against,
            "pred_format": against_format,
            "micro_f1": against.micro_f1,
            "precision": against.total.precision,
            "recall": against.total.recall,
        }
    if args.bootstrap:
        from padellm_ner.core.bootstrap import micro_f1_interval, paired_comparison

        settings = {"resamples": args.bootstrap, "confidence": args.confidence, "seed": args.seed}
        report["micro_f1_interval"] = micro_f1_interval(scores.per_document, **settings).to_json()
        if against is not None:
            report["against"]["micro_f1_interval"] = micro_f1_interval(against.per_document, **settings).to_json()
            report["against"]["paired"] = paired_comparison(
                scores.per_document, against.per_document, **settings
            ).to_json()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"{args.pred} ({pred_format}), de-duplication: {args.dedup}")
    print(scores_table(scores))
    print(
        f"micro-F1 {scores.micro_f1 * 100:.2f}{_interval_text(report.get('micro_f1_interval'))}   "
        f"macro-F1 {scores.macro_f1 * 100:.2f}"
    )
    if against is not None:
        other = report["against"]
        print(
            f"against {args.against}: micro-F1 {against.micro_f1 * 100:.2f}"
            f"{_interval_text(other.get('micro_f1_interval'))}; difference "
            f"{(scores.micro_f1 - against.micro_f1) * 100:+.2f}"
            + (
                f"{_interval_text(other['paired']['difference'])}, higher in "
                f"{other['paired']['a_better_share'] * 100:.1f} % of resamples"
                if "paired" in other
                else ""
            )
        )
    return 0


def _in_order_of(records, others, name: str, other_name: str):
    """`others` in the order of `records`, matched by document id: a paired comparison needs the same documents."""
    by_id = {r.id: r for r in others}
    if len(by_id) != len(others) or set(by_id) != {r.id for r in records}:
        missing, extra = {r.id for r in records} - set(by_id), set(by_id) - {r.id for r in records}
        raise ValueError(
            f"--against {other_name} must hold the documents of {name}, each once (by id): "
            f"{len(missing)} missing, {len(extra)} not in {name}, "
            f"{len(others) - len(by_id)} repeated"
        )
    return [by_id[r.id] for r in records]


def _interval_text(interval: dict | None) -> str:
    if not interval:
        return ""
    return (
        f" ({interval['confidence'] * 100:.0f} % interval {interval['low'] * 100:.2f} to "
        f"{interval['high'] * 100:.2f}, {interval['resamples']} resamples)"
    )


def register(commands) -> None:
    """`data stats|reformulate|convert` and `score`."""
    data = commands.add_parser("data", help="read, inspect, convert and reformulate NER corpora")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    stats = data_commands.add_parser("stats", help="documents, sentences and mentions per label of a corpus")
    stats.add_argument("file")
    add_reader_options(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=cmd_data_stats)

    reform = data_commands.add_parser("reformulate", help="the PaDeLLM training examples of a corpus, as JSONL")
    reform.add_argument("file")
    add_reader_options(reform)
    reform.add_argument("--schema", default="auto", help="label schema (default: inferred from the labels)")
    reform.add_argument("--output", "-o", help="write to this file instead of standard output")
    reform.set_defaults(handler=cmd_data_reformulate)

    convert = data_commands.add_parser("convert", help="write a corpus in another format")
    convert.add_argument("file")
    add_reader_options(convert)
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
    score.add_argument(
        "--dedup",
        default="keep-max",
        choices=DEDUP_POLICIES,
        help="de-duplication across labels (keep-max: the paper's)",
    )
    score.add_argument(
        "--metric",
        default="set",
        choices=("set", "span"),
        help="set: the paper's set-based F1; span: strict character spans",
    )
    score.add_argument(
        "--against",
        help="predictions of another system on the same documents (by id): "
        "both scores, and with --bootstrap the paired interval of their difference",
    )
    score.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="N resamples of the documents: a percentile interval of micro-F1 (0: none)",
    )
    score.add_argument("--confidence", type=float, default=0.95, help="of the bootstrap interval")
    score.add_argument("--seed", type=int, default=0, help="of the bootstrap resampling")
    score.add_argument("--json", action="store_true")
    score.set_defaults(handler=cmd_score)
