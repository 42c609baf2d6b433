"""The Prometheus metrics endpoint of a process (service, stream or worker)."""

from __future__ import annotations


def start_metrics_server(port: int | None, host: str) -> None:
    """Serve the process's Prometheus registry on host:port, in a daemon thread; nothing without a port."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host)
