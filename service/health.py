"""The service's health follows its workers': SERVING while at least one worker answers its health check as
SERVING, NOT_SERVING while none does (so that a load balancer or kubelet stops sending it documents)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from padellm.v1 import worker_pb2
from padellm_ner.lifecycle import HealthWatch

from .worker_pool import Endpoint, WorkerPool

WORKER_SERVICE = worker_pb2.DESCRIPTOR.services_by_name["ModelWorkerService"].full_name


async def _serving(endpoint: Endpoint, timeout_s: float) -> bool:
    stub = health_pb2_grpc.HealthStub(endpoint.channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=WORKER_SERVICE), timeout=timeout_s)
    except grpc.aio.AioRpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def worker_health_watch(
    pool: WorkerPool,
    on_change: Callable[[bool], Awaitable[None]],
    *,
    interval_s: float = 5.0,
    timeout_s: float = 2.0,
) -> HealthWatch:
    async def any_worker_serving() -> bool:
        return any(await asyncio.gather(*(_serving(e, timeout_s) for e in pool.endpoints)))

    return HealthWatch(any_worker_serving, on_change, name="workers", interval_s=interval_s)
