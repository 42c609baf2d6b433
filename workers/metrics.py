"""Prometheus metrics of a worker process (served with `--metrics-port`)."""

from prometheus_client import Counter, Gauge

CALLS = Counter("padellm_worker_calls_total", "Worker gRPC calls by method and status code", ["method", "code"])
BACKEND_UP = Gauge("padellm_worker_backend_up", "1 while the worker's backend answers its health check")
# what a worker has to do now, whatever decodes it (the embedded engine, vLLM, TGI): the chart's KEDA trigger
IN_FLIGHT = Gauge("padellm_worker_calls_in_flight", "Count, Mention and Extract calls the worker is serving now")


def observe(method: str, code: str, error: BaseException | None) -> None:
    CALLS.labels(method.rsplit("/", 1)[-1], code).inc()
