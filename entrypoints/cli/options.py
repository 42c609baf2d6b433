"""Options and helpers the commands share: corpus readers, document selection, the embedded engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core import get_schema, infer_schema
from ..data import DOCUMENT_FORMATS


def add_reader_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
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


def reader_options(args: argparse.Namespace, prefix: str = "") -> dict:
    p = f"{prefix}_" if prefix else ""
    return {"scheme": getattr(args, f"{p}scheme"), "offsets": getattr(args, f"{p}offsets"), "end": getattr(args, f"{p}end")}


def add_selection_options(parser: argparse.ArgumentParser, default_limit: int | None) -> None:
    parser.add_argument("--limit", type=int,
                        help="only the first N documents" + (f" (default {default_limit})" if default_limit else ""))
    parser.add_argument("--sample", type=int,
                        help="a seeded uniform random sample of N documents, in corpus order, instead of the first N")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.set_defaults(default_limit=default_limit)


def selected(args: argparse.Namespace, documents) -> tuple[list, dict]:
    from ..data.selection import select_documents, selection_label

    limit = args.limit if args.limit is not None or args.sample is not None else args.default_limit
    return (select_documents(documents, limit, args.sample, args.seed),
            selection_label(limit, args.sample, args.seed, len(documents)))


def write_output(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def at_least(minimum: int):
    """An argparse type: an integer of `minimum` or more."""
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return number

    parse.__name__ = "int"  # argparse names the type in its message for non-numbers
    return parse


non_negative, positive = at_least(0), at_least(1)  # argparse types


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a PaDeLLM model folder (default: PADELLM_MODEL, else the shipped model)")
    parser.add_argument("--base-model", help="a local transformers causal-LM folder (default: SmolLM2-135M)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda where present)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"),
                        help="engine weights (default auto: bf16 on a GPU, fp32 on the CPU; or PADELLM_DTYPE)")
    parser.add_argument("--schema", help="label schema (default: the model's)")
    parser.add_argument("--lookup-tokens", type=non_negative, default=None, metavar="N",
                        help="prompt-lookup decoding: draft up to N tokens of each sequence from the document and "
                             "keep what greedy decoding agrees with (same output, fewer forwards); 0 turns it off "
                             "(default: PADELLM_LOOKUP_TOKENS, else 4)")


def add_window_options(parser: argparse.ArgumentParser) -> None:
    from ..core.segment import DEFAULT_WINDOW_TOKENS, WindowUnit

    parser.add_argument("--window-tokens", type=at_least(8), default=DEFAULT_WINDOW_TOKENS, metavar="N",
                        help="documents are read as windows of at most N estimated tokens; a longer sentence is cut "
                             f"at its best break (default {DEFAULT_WINDOW_TOKENS})")
    parser.add_argument("--window-unit", default=WindowUnit.SENTENCE.value, choices=[u.value for u in WindowUnit],
                        help="sentence: one sentence per window (default); packed: consecutive sentences up to the "
                             "budget (fewer tokens to read, lower recall with the shipped model)")


def window_policy(args: argparse.Namespace):
    from ..core.segment import WindowPolicy

    return WindowPolicy(args.window_tokens, args.window_unit)


def add_tls_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key turns TLS on")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="CA of client certificates: requires them (mutual TLS)")


def set_threads() -> None:
    import torch

    from .. import config

    if config.threads():
        torch.set_num_threads(config.threads())


def schema_for(documents, name: str):
    if name != "auto":
        return get_schema(name)
    languages = {d.language for d in documents}
    return infer_schema({e.label for d in documents for e in d.entities}, languages.pop() if len(languages) == 1 else None)


def schema_of(args: argparse.Namespace, engine_model):
    return get_schema(args.schema or engine_model.info.get("schema") or "conll03")


def engine_for(args: argparse.Namespace, model: str | None = None, prefix_sharing: bool = True):
    """An engine for a model folder: PaDeLLM or, for an AutoReg_Struct model, the autoregressive baseline."""
    from workers.engine.autoreg import AutoregStructEngine
    from workers.engine.loading import load_engine_model
    from workers.engine.padellm import PadellmEngine

    engine_model = load_engine_model(model, base_model=getattr(args, "base_model", None),
                                     device=getattr(args, "device", None), adapter=not getattr(args, "no_adapter", False),
                                     dtype=getattr(args, "dtype", None))
    lookup = lookup_tokens(args)
    policy = window_policy(args) if hasattr(args, "window_tokens") else None
    if engine_model.info.get("objective") == "autoreg-struct":
        return engine_model, AutoregStructEngine(engine_model, lookup_tokens=lookup, window_policy=policy)
    return engine_model, PadellmEngine(engine_model, prefix_sharing=prefix_sharing,
                                       dedup=getattr(args, "dedup", "keep-max"), lookup_tokens=lookup,
                                       window_policy=policy)


def lookup_tokens(args: argparse.Namespace) -> int:
    from workers.engine.lookup import DEFAULT_LOOKUP_TOKENS

    from .. import config

    value = getattr(args, "lookup_tokens", None)
    return config.lookup_tokens(DEFAULT_LOOKUP_TOKENS) if value is None else value
