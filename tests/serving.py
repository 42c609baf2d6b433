"""Helpers for the serving tests: real grpc.aio servers on loopback, started and stopped in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from padellm.v1 import ner_pb2, ner_pb2_grpc
from padellm_ner.grpc_common import TlsFiles, channel, start_server
from service.orchestrator import Orchestrator, OrchestratorConfig
from service.server import SERVICE_NAME as NER_SERVICE
from service.server import NerService
from service.server import add_to_server as add_ner
from service.worker_pool import RetryPolicy, WorkerPool
from workers.backends.embedded import EmbeddedBackend
from workers.server import SERVICE_NAME as WORKER_SERVICE
from workers.server import WorkerService
from workers.server import add_to_server as add_worker


@contextlib.asynccontextmanager
async def worker(backend, tls: TlsFiles | None = None, observe=None) -> AsyncIterator[tuple[str, object]]:
    await backend.start()
    server, port, _ = await start_server(
        add_worker(WorkerService(backend)), [WORKER_SERVICE], "127.0.0.1", 0, tls, observe
    )
    try:
        yield f"127.0.0.1:{port}", server
    finally:
        await server.stop(0)
        await backend.stop()


@contextlib.asynccontextmanager
async def ner_service(
    targets: list[str],
    mode: str = "multi",
    *,
    deadline_s: float = 30.0,
    tls: TlsFiles | None = None,
    worker_tls: TlsFiles | None = None,
    affinity: bool = True,
    attempts: int = 4,
    max_documents: int = 32,
):
    pool = WorkerPool(
        targets,
        tls=worker_tls,
        affinity=affinity,
        retry=RetryPolicy(attempts=attempts, initial_backoff_s=0.01, max_backoff_s=0.05),
    )
    await pool.start()
    orchestrator = Orchestrator(pool, OrchestratorConfig(mode=mode, call_deadline_s=deadline_s, model="test"))
    server, port, _ = await start_server(
        add_ner(NerService(orchestrator, max_documents=max_documents)), [NER_SERVICE], "127.0.0.1", 0, tls
    )
    try:
        yield f"127.0.0.1:{port}", orchestrator
    finally:
        await server.stop(0)
        await pool.stop()


@contextlib.asynccontextmanager
async def ner_client(target: str, tls: TlsFiles | None = None):
    async with channel(target, tls) as ch:
        yield ner_pb2_grpc.NerServiceStub(ch)


def document(doc_id: str, text: str, **kw) -> ner_pb2.Document:
    return ner_pb2.Document(id=doc_id, text=text, **kw)


def request(doc_id: str, text: str, **kw) -> ner_pb2.RecognizeRequest:
    return ner_pb2.RecognizeRequest(document=document(doc_id, text, **kw))


async def recognize(stub, doc_id: str, text: str, *, deadline: float, **kw) -> ner_pb2.EntityRecord:
    """One document through the public API; `deadline`: the call's gRPC timeout in seconds."""
    return (await stub.Recognize(request(doc_id, text, **kw), timeout=deadline)).record


class Probability(float):
    """A mention's probability, equal to another within float32 rounding: the same tokens decoded in forwards
    of other shapes (multi vs batch mode, a batch of several documents) round differently in the last bits."""

    def __eq__(self, other) -> bool:
        return isinstance(other, float) and abs(float(self) - float(other)) <= 1e-4

    __hash__ = float.__hash__


def entities(record) -> list[tuple]:
    return [(e.label, e.text, e.start, e.end, Probability(e.probability)) for e in record.entities]


class SlowBackend:
    """Wraps a backend and delays every call: for deadline tests."""

    def __init__(self, inner: EmbeddedBackend, delay_s: float):
        self.inner, self.delay_s = inner, delay_s
        self.name, self.model_name, self.model_version = inner.name, inner.model_name, inner.model_version
        self.schemas, self.window_limit = inner.schemas, inner.window_limit

    async def start(self):
        await self.inner.start()

    async def healthy(self) -> bool:
        return await self.inner.healthy()

    async def stop(self):
        await self.inner.stop()

    async def count(self, *a):
        await asyncio.sleep(self.delay_s)
        return await self.inner.count(*a)

    async def mention(self, *a):
        await asyncio.sleep(self.delay_s)
        return await self.inner.mention(*a)

    async def extract(self, *a):
        await asyncio.sleep(self.delay_s)
        return await self.inner.extract(*a)


class FaultProxy:
    """A real HTTP server in front of a model server (vLLM, the TGI stand-in) that answers the next requests to
    `path` with the statuses queued in `fail` and forwards the rest, counting what it saw: the failures a real
    server does not make on demand."""

    TGI_ERROR_TYPES = {422: "validation", 424: "generation", 429: "overloaded"}

    def __init__(self, upstream: str, path: str = "/v1/completions", style: str = "openai"):
        self.upstream = upstream
        self.path = path
        self.style = style  # the error bodies: OpenAI's (vLLM) or TGI's
        self.fail: list[int] = []
        self.requests = 0
        self.prompts_per_request: list[int] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        await self._http.close()
        assert self._runner is not None
        await self._runner.cleanup()

    async def forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == self.path:
            self.requests += 1
            prompts = json.loads(body).get("prompt", json.loads(body).get("inputs"))
            self.prompts_per_request.append(len(prompts) if isinstance(prompts, list) else 1)
            if self.fail:
                status = self.fail.pop(0)
                if self.style == "tgi":
                    error_type = self.TGI_ERROR_TYPES.get(status, "unhealthy")
                    return web.json_response({"error": f"injected {status}", "error_type": error_type}, status=status)
                return web.json_response({"error": {"message": f"injected {status}", "code": status}}, status=status)
        headers = {"Content-Type": request.content_type} if body else {}
        async with self._http.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as reply:
            return web.Response(
                body=await reply.read(), status=reply.status, content_type=reply.content_type or "application/json"
            )


def start_worker_process(port: int, *args: str) -> subprocess.Popen:
    """A `padellm-ner worker` process on loopback (one torch thread), returned once it says it is ready."""
    env = {**os.environ, "PADELLM_THREADS": "1", "PADELLM_LOG_LEVEL": "WARNING"}
    cli = str(Path(sys.executable).parent / "padellm-ner")
    process = subprocess.Popen(
        [cli, "worker", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None and "ready on" in process.stdout.readline()
    return process
