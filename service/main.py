"""`padellm-ner serve`: the public NER gRPC service on the orchestrator."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from padellm_ner.grpc_common import GrpcServer
from padellm_ner.lifecycle import shutdown_requested
from padellm_ner.telemetry import start_metrics_server

from .config import ServeArgs, WorkersArgs
from .health import worker_health_watch
from .orchestrator import Orchestrator
from .server import SERVICE_NAME, NerService, add_to_server, observe
from .worker_pool import WorkerPool

log = logging.getLogger("padellm.service")


def worker_pool(args: WorkersArgs) -> WorkerPool:
    return WorkerPool(list(args.addresses), tls=args.tls, affinity=args.affinity)


def worker_model_info(pool: WorkerPool) -> tuple[str, str]:
    """The model a worker named when the pool asked at start (records take theirs from each answer)."""
    for endpoint in pool.endpoints:
        if endpoint.info is not None:
            return endpoint.info.model, endpoint.info.model_version
    log.warning("no worker has said what it serves yet; records name the model as their workers answer")
    return "unknown", ""


async def run_service(args: ServeArgs) -> None:
    shutdown = shutdown_requested()
    start_metrics_server(args.metrics_port, args.metrics_host or args.host)
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(worker_pool(args.workers))
        model, version = worker_model_info(pool)
        orchestrator = Orchestrator(pool, args.orchestrator.config(model, version))
        service = NerService(
            orchestrator,
            default_schema=args.default_schema,
            max_text_chars=args.max_text_chars,
            max_documents=args.max_documents,
        )
        server = await stack.enter_async_context(
            GrpcServer(
                add_to_server(service),
                [SERVICE_NAME],
                args.host,
                args.port,
                args.tls,
                observe=observe,
                health_port=args.health_port,
            )
        )
        await stack.enter_async_context(worker_health_watch(pool, server.set_serving))
        log.info(
            "NER service on %s:%d (mode %s, workers %s, model %s)",
            args.host,
            server.port,
            args.orchestrator.mode.value,
            ",".join(args.workers.addresses),
            model,
        )
        print(f"service ready on {args.host}:{server.port}", flush=True)
        await shutdown.wait()


def main(args: ServeArgs) -> int:
    asyncio.run(run_service(args))
    return 0
