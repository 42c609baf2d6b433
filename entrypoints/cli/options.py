"""Options and helpers the commands share: corpus readers, document selection, the embedded engine."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from padellm_ner.args import window_policy
from padellm_ner.core import DEFAULT_SCHEMA, get_schema, infer_schema
from padellm_ner.data import DOCUMENT_FORMATS
from workers.config import EngineArgs


def add_reader_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    dash = f"--{prefix}-" if prefix else "--"
    dest = f"{prefix}_" if prefix else ""
    parser.add_argument(
        f"{dash}format",
        dest=f"{dest}format",
        default="auto",
        choices=("auto", *DOCUMENT_FORMATS),
        help="input format (default: detected from content)",
    )
    parser.add_argument(
        f"{dash}scheme",
        dest=f"{dest}scheme",
        default="auto",
        choices=("auto", "iob1", "iob2", "bioes", "bmes"),
        help="tagging scheme of column files",
    )
    parser.add_argument(
        f"{dash}offsets",
        dest=f"{dest}offsets",
        default="auto",
        choices=("auto", "token", "char"),
        help="offset unit of official PaDeLLM JSON files",
    )
    parser.add_argument(
        f"{dash}end",
        dest=f"{dest}end",
        default="auto",
        choices=("auto", "inclusive", "exclusive"),
        help="whether official PaDeLLM JSON end offsets are inclusive (all but GENIA)",
    )


def reader_options(args: argparse.Namespace, prefix: str = "") -> dict:
    p = f"{prefix}_" if prefix else ""
    return {
        "scheme": getattr(args, f"{p}scheme"),
        "offsets": getattr(args, f"{p}offsets"),
        "end": getattr(args, f"{p}end"),
    }


def add_selection_options(parser: argparse.ArgumentParser, default_limit: int | None) -> None:
    parser.add_argument(
        "--limit",
        type=int,
        help="only the first N documents" + (f" (default {default_limit})" if default_limit else ""),
    )
    parser.add_argument(
        "--sample",
        type=int,
        help="a seeded uniform random sample of N documents, in corpus order, instead of the first N",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.set_defaults(default_limit=default_limit)


def selected(args: argparse.Namespace, documents) -> tuple[list, dict]:
    from padellm_ner.data.selection import select_documents, selection_label

    limit = args.limit if args.limit is not None or args.sample is not None else args.default_limit
    return (
        select_documents(documents, limit, args.sample, args.seed),
        selection_label(limit, args.sample, args.seed, len(documents)),
    )


def write_output(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def set_threads() -> None:
    """torch's CPU threads for a command without engine flags: PADELLM_THREADS, else torch's default."""
    from padellm_ner import config

    EngineArgs(threads=config.threads()).apply_threads()


def schema_for(documents, name: str):
    if name != "auto":
        return get_schema(name)
    languages = {d.language for d in documents}
    return infer_schema(
        {e.label for d in documents for e in d.entities}, languages.pop() if len(languages) == 1 else None
    )


def schema_of(engine: EngineArgs, engine_model):
    return get_schema(engine.schema or engine_model.info.get("schema") or DEFAULT_SCHEMA)


def engine_for(args: argparse.Namespace, model: str | None = None, prefix_sharing: bool = True, adapter: bool = True):
    """An engine for a model folder: PaDeLLM or, for an AutoReg_Struct model, the autoregressive baseline."""
    from workers.engine.autoreg import AutoregStructEngine
    from workers.engine.padellm import PadellmEngine

    engine = replace(EngineArgs.from_cli_args(args), model=model)
    engine_model = engine.load(adapter=adapter)
    policy = window_policy(args)
    if engine_model.info.get("objective") == "autoreg-struct":
        return engine_model, AutoregStructEngine(engine_model, lookup_tokens=engine.lookup_tokens, window_policy=policy)
    return engine_model, PadellmEngine(
        engine_model,
        prefix_sharing=prefix_sharing,
        dedup=args.dedup,
        lookup_tokens=engine.lookup_tokens,
        window_policy=policy,
    )
