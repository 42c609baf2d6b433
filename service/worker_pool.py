"""Client side of the model workers: one channel per endpoint, client-side balancing, retries with backoff.

Multi mode spreads sequence calls over the endpoints round-robin, or, with document affinity, sends every
call of a document to the same endpoint first (so that endpoint's prefix cache, or its TGI prefix cache,
serves the document) and moves to the next endpoint only on failure. A call that fails with UNAVAILABLE or
RESOURCE_EXHAUSTED is retried on the next endpoint after an exponential, jittered backoff; an endpoint that
answered UNAVAILABLE is skipped for a short cool-down.

An endpoint may itself name many workers: `dns:///workers-headless.ns.svc.cluster.local:50061` (a headless
Service) resolves to every ready worker pod, and the channel balances calls over them round-robin; workers
close connections after an age (`--max-connection-age-s`), so the channel re-resolves and finds new pods.
Scaling the workers then needs no change here.

Each endpoint serves one model (a worker group): the pool asks every endpoint's `Info` at start and every
`info_refresh_s`, and sends a document's calls only to the endpoints that serve its schema. Where none does,
the call fails with FAILED_PRECONDITION naming the schema and what is served, once every endpoint has answered;
while some have not, with UNAVAILABLE (a worker still starting may serve it: the caller retries).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from padellm.v1 import worker_pb2, worker_pb2_grpc
from padellm_ner.errors import ErrorCode, PadellmError
from padellm_ner.grpc_common import TlsFiles, channel
from padellm_ner.lifecycle import AsyncComponent
from padellm_ner.logs import RateLimitedLog

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.dns_min_time_between_resolutions_ms", 5000),
    # gRPC's default reconnect backoff grows to 120 s: a worker back after a 10 s restart would wait for the next
    # try up to 15 s more. Workers are near (same cluster) and cheap to dial, so try again within 2 s.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass
class RetryPolicy:
    attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0
    cooldown_s: float = 2.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)
        return random.uniform(ceiling / 2, ceiling)


INFO_TIMEOUT_S = 2.0


@dataclass
class Endpoint:
    target: str
    channel: grpc.aio.Channel
    stub: worker_pb2_grpc.ModelWorkerServiceStub
    down_until: float = 0.0
    calls: int = 0
    failures: int = 0
    info: worker_pb2.InfoResponse | None = None  # what the endpoint last said it serves; None: not yet answered

    def serves(self, schema: str) -> bool:
        return self.info is not None and schema in self.info.schemas


@dataclass
class PoolStats:
    retries: int = 0
    failures: dict = field(default_factory=dict)


class WorkerPool(AsyncComponent):
    def __init__(
        self,
        targets: list[str],
        *,
        tls: TlsFiles | None = None,
        affinity: bool = True,
        retry: RetryPolicy | None = None,
        info_refresh_s: float = 15.0,
    ):
        if not targets:
            raise ValueError("at least one worker endpoint is needed")
        self.targets = targets
        self.tls = tls
        self.affinity = affinity
        self.retry = retry or RetryPolicy()
        self.info_refresh_s = info_refresh_s
        self.endpoints: list[Endpoint] = []
        self.stats = PoolStats()
        self._next = 0
        self._retry_log = RateLimitedLog(log, every_s=10.0)  # an outage: a line per 10 s, not per call
        self._refresher: asyncio.Task | None = None

    async def _start(self) -> None:
        for target in self.targets:
            # a target may name many workers (dns:/// of a headless Service, ipv4:A,B): gRPC balances calls
            # over them round-robin and follows DNS as workers come and go
            ch = channel(target, self.tls, options=CHANNEL_OPTIONS)
            self.endpoints.append(Endpoint(target, ch, worker_pb2_grpc.ModelWorkerServiceStub(ch)))
        await self.refresh()  # at most INFO_TIMEOUT_S: workers not up yet are asked again, soon
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def _stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        await asyncio.gather(*(e.channel.close() for e in self.endpoints))
        self.endpoints.clear()

    # --- what each endpoint serves ------------------------------------------------------------------------------

    async def _describe(self, endpoint: Endpoint) -> None:
        try:
            info = await endpoint.stub.Info(worker_pb2.InfoRequest(), timeout=INFO_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            log.debug("worker %s did not describe itself: %s", endpoint.target, error.code().name)
            return
        if endpoint.info is None or list(endpoint.info.schemas) != list(info.schemas):
            log.info(
                "worker %s serves %s %s (%s)", endpoint.target, info.model, info.model_version, ", ".join(info.schemas)
            )
        endpoint.info = info

    async def refresh(self, endpoints: list[Endpoint] | None = None) -> None:
        """Ask endpoints (default: all) what they serve, concurrently."""
        await asyncio.gather(*(self._describe(e) for e in (self.endpoints if endpoints is None else endpoints)))

    async def _refresh_forever(self) -> None:
        while True:
            # soon again while some endpoint has never answered (a worker still starting)
            unknown = any(e.info is None for e in self.endpoints)
            await asyncio.sleep(min(1.0, self.info_refresh_s) if unknown else self.info_refresh_s)
            await self.refresh()

    def served(self) -> dict[str, list[Endpoint]]:
        """Schema -> the endpoints that said they serve it."""
        by_schema: dict[str, list[Endpoint]] = {}
        for endpoint in self.endpoints:
            for schema in endpoint.info.schemas if endpoint.info is not None else ():
                by_schema.setdefault(schema, []).append(endpoint)
        return by_schema

    async def endpoints_for(self, schema: str) -> list[Endpoint]:
        """The endpoints that serve `schema`; endpoints not heard from yet are asked first."""
        serving = [e for e in self.endpoints if e.serves(schema)]
        if serving:
            return serving
        unknown = [e for e in self.endpoints if e.info is None]
        if unknown:
            await self.refresh(unknown)
            serving = [e for e in self.endpoints if e.serves(schema)]
            if serving:
                return serving
            unknown = [e for e in self.endpoints if e.info is None]
        if unknown:
            raise PadellmError(
                f"no worker serving schema {schema} has answered yet ({len(unknown)} of {len(self.endpoints)} "
                "worker endpoints unreachable)",
                code=ErrorCode.UNAVAILABLE,
            )
        served = "; ".join(
            f"{name} ({endpoints[0].info.model} {endpoints[0].info.model_version})".replace(" )", ")")
            for name, endpoints in sorted(self.served().items())
            if endpoints[0].info is not None
        )
        raise PadellmError(
            f"no worker serves schema {schema}; the workers serve: {served or 'nothing'}",
            code=ErrorCode.FAILED_PRECONDITION,
        )

    # --- calls --------------------------------------------------------------------------------------------------

    def _order(self, document_id: str, endpoints: list[Endpoint]) -> list[Endpoint]:
        """Endpoints to try, in order: affinity's home endpoint first, or the next one round-robin."""
        n = len(endpoints)
        if self.affinity:
            first = zlib.crc32(document_id.encode()) % n
        else:
            first = self._next % n
            self._next += 1
        ordered = [endpoints[(first + i) % n] for i in range(n)]
        now = time.monotonic()
        up = [e for e in ordered if e.down_until <= now]
        return up + [e for e in ordered if e.down_until > now]  # cooling-down endpoints as a last resort

    async def call(
        self,
        document_id: str,
        invoke: Callable[[worker_pb2_grpc.ModelWorkerServiceStub], Awaitable[T]],
        schema: str | None = None,
    ) -> T:
        """`invoke(stub)` on an endpoint that serves `schema` (None: any endpoint), retried on other endpoints
        for retryable errors."""
        last_error: grpc.aio.AioRpcError | None = None
        for attempt in range(self.retry.attempts):
            candidates = self.endpoints if schema is None else await self.endpoints_for(schema)
            order = self._order(document_id, candidates)
            endpoint = order[attempt % len(order)] if attempt < len(order) else order[0]
            endpoint.calls += 1
            try:
                return await invoke(endpoint.stub)
            except grpc.aio.AioRpcError as error:
                endpoint.failures += 1
                code = error.code()
                self.stats.failures[code.name] = self.stats.failures.get(code.name, 0) + 1
                if code not in RETRYABLE:
                    raise
                if code == grpc.StatusCode.UNAVAILABLE:
                    endpoint.down_until = time.monotonic() + self.retry.cooldown_s
                last_error = error
                if attempt + 1 < self.retry.attempts:
                    self.stats.retries += 1
                    self._retry_log.warning(f"worker {endpoint.target}: {code.name}; retrying on the next one")
                    await asyncio.sleep(self.retry.backoff(attempt))
        assert last_error is not None
        raise last_error
