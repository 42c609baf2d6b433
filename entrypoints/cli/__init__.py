"""The `padellm-ner` command line. One module per group of commands, each adding its sub-commands in `register`:
`data` (corpora, scores), `model` (base model, training, export), `inference` (the embedded model on text and
corpora), `services` (worker, service, stream); `options` holds what they share."""

from __future__ import annotations

import argparse
import sys

from padellm_ner import __version__

from . import data, inference, model, services


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="padellm-ner", description="PaDeLLM-NER: named entity recognition by parallel decoding"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (data, model, inference, services):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"padellm-ner: error: {message}", file=sys.stderr)
        return 2
