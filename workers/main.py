"""`padellm-ner worker`: a model worker process (gRPC server over a backend)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from padellm_ner.grpc_common import GrpcServer
from padellm_ner.lifecycle import HealthWatch, shutdown_requested
from padellm_ner.telemetry import start_metrics_server

from . import metrics
from .backends.base import Backend
from .config import BackendKind, WorkerArgs
from .server import SERVICE_NAME, WorkerService, add_to_server

log = logging.getLogger("padellm.worker")


def make_backend(args: WorkerArgs) -> Backend:
    if args.backend is BackendKind.EMBEDDED:
        from .backends.embedded import EmbeddedBackend

        args.engine.apply_threads()
        return EmbeddedBackend(
            args.engine.load(),
            batch_window_ms=args.batch_window_ms,
            max_batch=args.max_batch,
            max_forward_tokens=args.max_forward_tokens,
            max_prefill_tokens=args.max_prefill_tokens,
            prefix_cache_tokens=args.prefix_cache_tokens,
            lookup_tokens=args.engine.lookup_tokens,
        )
    if args.backend is BackendKind.VLLM:
        from pathlib import Path

        from padellm_ner import config as environment

        from .backends.vllm import VllmBackend, served_model

        folder = args.engine.model or environment.model_override()
        return VllmBackend(
            args.vllm.url or "",
            served_model(args.vllm.served_model, Path(folder) if folder else None, args.tgi.schemas),
            timeout_s=args.vllm.timeout_s,
            max_concurrency=args.vllm.max_concurrency,
            max_prompts=args.vllm.max_prompts,
            batch_window_ms=args.batch_window_ms,
            api_key=environment.vllm_api_key(),
        )
    from .backends.tgi import TgiBackend

    return TgiBackend(
        args.tgi.url or "", timeout_s=args.tgi.timeout_s, model_name=args.tgi.model_name, schemas=args.tgi.schemas
    )


async def run_worker(args: WorkerArgs) -> None:
    shutdown = shutdown_requested()
    start_metrics_server(args.metrics_port, args.metrics_host or args.host)
    async with AsyncExitStack() as stack:
        backend = await stack.enter_async_context(make_backend(args))
        if args.tgi_api_port is not None:
            from .tgi_api import TgiApiServer

            api = await stack.enter_async_context(TgiApiServer(backend, host=args.host, port=args.tgi_api_port))
            log.info("TGI-compatible HTTP API on %s:%d", args.host, api.port)
        service = WorkerService(backend, max_text_chars=args.max_text_chars, max_window_tokens=args.max_window_tokens)
        server = await stack.enter_async_context(
            GrpcServer(
                add_to_server(service),
                [SERVICE_NAME],
                args.host,
                args.port,
                args.tls,
                observe=metrics.observe,
                health_port=args.health_port,
                max_connection_age_s=args.max_connection_age_s,
            )
        )

        async def set_serving(serving: bool) -> None:
            metrics.BACKEND_UP.set(1 if serving else 0)
            await server.set_serving(serving)

        # the worker's health follows its backend's (a TGI server that went away: NOT_SERVING)
        await stack.enter_async_context(HealthWatch(backend.healthy, set_serving, name="backend"))
        log.info(
            "worker serving on %s:%d (backend %s, model %s, tls %s)",
            args.host,
            server.port,
            backend.name,
            backend.model_name,
            args.tls.enabled,
        )
        print(f"worker ready on {args.host}:{server.port}", flush=True)
        await shutdown.wait()


def main(args: WorkerArgs) -> int:
    asyncio.run(run_worker(args))
    return 0
