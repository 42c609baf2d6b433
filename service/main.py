"""`padellm-ner serve`: the public NER gRPC service on the orchestrator."""

from __future__ import annotations

import asyncio
import logging

from padellm_ner.grpc_common import TlsFiles, serve_until_signal, start_server

from padellm_ner.core.segment import WindowPolicy

from .orchestrator import MentionStart, Orchestrator, OrchestratorConfig
from .server import SERVICE_NAME, NerService, add_to_server
from .worker_pool import WorkerPool

log = logging.getLogger("padellm.service")


async def worker_model_info(pool: WorkerPool) -> tuple[str, str]:
    from padellm.v1 import worker_pb2

    try:
        info = await pool.call("", lambda stub: stub.Info(worker_pb2.InfoRequest(), timeout=10))
        return info.model, info.model_version
    except Exception as error:  # the service still starts; records then name the model as unknown
        log.warning("could not ask the workers for their model: %s", error)
        return "unknown", ""


async def run_service(args) -> None:
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.host)
    worker_tls = TlsFiles(args.worker_tls_cert, args.worker_tls_key, args.worker_tls_ca)
    async with WorkerPool(args.workers.split(","), tls=worker_tls, affinity=not args.no_affinity) as pool:
        model, version = await worker_model_info(pool)
        orchestrator = Orchestrator(pool, OrchestratorConfig(
            mode=args.mode, call_deadline_s=args.deadline_s, max_in_flight=args.max_in_flight, dedup=args.dedup,
            model=model, model_version=version, window_policy=WindowPolicy(args.window_tokens, args.window_unit),
            mention_start=MentionStart(args.mention_start)))
        service = NerService(orchestrator, default_schema=args.schema, max_text_chars=args.max_text_chars)
        tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
        server, port, health = await start_server(add_to_server(service), [SERVICE_NAME], args.host, args.port, tls)
        log.info("NER service on %s:%d (mode %s, workers %s, model %s)", args.host, port, args.mode, args.workers, model)
        print(f"service ready on {args.host}:{port}", flush=True)
        await serve_until_signal(server, health)


def main(args) -> int:
    asyncio.run(run_service(args))
    return 0
