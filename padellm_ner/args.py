"""Command-line flags that the service and the workers share (windows, server TLS) and argparse value types.
Only the config modules (`service/config.py`, `workers/config.py`) and the entry points use them."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .core.segment import DEFAULT_WINDOW_TOKENS_BY_LANGUAGE, WindowPolicy, WindowUnit
from .grpc_common import TlsFiles


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`."""

    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return number

    parse.__name__ = "int"  # argparse names the type in its message for non-numbers
    return parse


non_negative, positive = at_least(0), at_least(1)


def add_window_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window-tokens",
        type=at_least(8),
        default=None,
        metavar="N",
        help="documents are read as windows of at most N estimated tokens; a longer sentence is cut "
        "at its best break (default by language: "
        + ", ".join(f"{language} {n}" for language, n in DEFAULT_WINDOW_TOKENS_BY_LANGUAGE.items())
        + ")",
    )
    parser.add_argument(
        "--window-unit",
        default=WindowUnit.SENTENCE.value,
        choices=[u.value for u in WindowUnit],
        help="sentence: one sentence per window (default); packed: consecutive sentences up to the "
        "budget (fewer tokens to read, lower recall with the shipped model)",
    )


def window_policy(args: argparse.Namespace) -> WindowPolicy:
    return WindowPolicy(args.window_tokens, WindowUnit(args.window_unit))


def add_tls_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key turns TLS on")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="CA of client certificates: requires them (mutual TLS)")


def add_health_port_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--health-port",
        type=int,
        help="also serve gRPC health in plaintext on this port, alone (kubelet's gRPC probes speak no TLS)",
    )


def tls_server_files(args: argparse.Namespace) -> TlsFiles:
    return TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)


def add_metrics_args(parser: argparse.ArgumentParser, default_host: str | None) -> None:
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument(
        "--metrics-host",
        default=default_host,
        help="address of the metrics server (default: " + (default_host or "--host") + ")",
    )
