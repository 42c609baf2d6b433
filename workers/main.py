"""`padellm-ner worker`: a model worker process (gRPC server over a backend)."""

from __future__ import annotations

import asyncio
import logging

from padellm_ner.grpc_common import TlsFiles, serve_until_signal, start_server

from .server import SERVICE_NAME, WorkerService, add_to_server

log = logging.getLogger("padellm.worker")


def make_backend(args):
    if args.backend == "embedded":
        from .backends.embedded import EmbeddedBackend
        from .engine.loading import load_engine_model

        engine_model = load_engine_model(args.model, base_model=args.base_model, device=args.device, dtype=args.dtype)
        from padellm_ner import config

        from .engine.lookup import DEFAULT_LOOKUP_TOKENS

        lookup = args.lookup_tokens if args.lookup_tokens is not None else config.lookup_tokens(DEFAULT_LOOKUP_TOKENS)
        return EmbeddedBackend(engine_model, batch_window_ms=args.batch_window_ms, lookup_tokens=lookup)
    if args.backend == "tgi":
        from .backends.tgi import TgiBackend

        if not args.tgi_url:
            raise ValueError("--backend tgi needs --tgi-url")
        schemas = [name for name in (args.schemas or "").split(",") if name]
        return TgiBackend(args.tgi_url, timeout_s=args.tgi_timeout_s, model_name=args.tgi_model_name, schemas=schemas)
    raise ValueError(f"unknown backend {args.backend!r}")


async def run_worker(args) -> None:
    backend = make_backend(args)
    await backend.start()
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    service = WorkerService(backend, max_text_chars=args.max_text_chars, max_window_tokens=args.max_window_tokens)
    server, port, health = await start_server(add_to_server(service), [SERVICE_NAME], args.host, args.port, tls)
    extra = []
    if getattr(args, "tgi_api_port", None) is not None:
        from .tgi_api import TgiApiServer

        api = TgiApiServer(backend, host=args.host, port=args.tgi_api_port)
        await api.start()
        extra.append(api)
        log.info("TGI-compatible HTTP API on %s:%d", args.host, api.port)
    log.info("worker serving on %s:%d (backend %s, model %s, tls %s)", args.host, port, backend.name,
             backend.model_name, tls.enabled)
    print(f"worker ready on {args.host}:{port}", flush=True)

    async def on_stop():
        for item in extra:
            await item.stop()
        await backend.stop()

    await serve_until_signal(server, health, on_stop=on_stop)


def main(args) -> int:
    asyncio.run(run_worker(args))
    return 0
