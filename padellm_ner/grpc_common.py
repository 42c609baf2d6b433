"""What both gRPC servers (worker and public API) and their clients share: TLS from certificate files,
health checking, reflection, and a graceful lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from .lifecycle import AsyncComponent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files. Server: cert + key, and client_ca to require client certificates (mutual TLS).
    Client: ca to verify the server, and cert + key to present a client certificate."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.ca)


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    if not (tls.cert and tls.key):
        raise ValueError("a TLS server needs both a certificate and a key file")
    return grpc.ssl_server_credentials(
        [(_read(tls.key), _read(tls.cert))], root_certificates=_read(tls.ca), require_client_auth=bool(tls.ca)
    )


def channel(target: str, tls: TlsFiles | None = None, options: list | None = None) -> grpc.aio.Channel:
    options = options or [("grpc.max_receive_message_length", 64 << 20)]
    if tls and tls.enabled:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls.ca), private_key=_read(tls.key), certificate_chain=_read(tls.cert)
        )
        return grpc.aio.secure_channel(target, credentials, options=options)
    return grpc.aio.insecure_channel(target, options=options)


async def start_server(
    add_services,
    service_names: list[str],
    host: str,
    port: int,
    tls: TlsFiles | None = None,
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """A started grpc.aio server with the given services, health checking and reflection; returns its port."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.so_reuseport", 0)])
    add_services(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, server_credentials(tls))
        if tls and tls.enabled
        else server.add_insecure_port(address)
    )
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", *service_names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health


class GrpcServer(AsyncComponent):
    """A grpc.aio server with health checking and reflection. `start` binds and reports SERVING; `stop` reports
    NOT_SERVING, lets calls in flight finish for `grace_s` and stops."""

    def __init__(
        self,
        add_services: Callable[[grpc.aio.Server], None],
        service_names: list[str],
        host: str,
        port: int,
        tls: TlsFiles | None = None,
        grace_s: float = 10.0,
    ):
        self._add_services, self._names, self._host, self._requested_port = add_services, service_names, host, port
        self._tls, self._grace_s = tls, grace_s
        self._server: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self.port = 0

    async def _start(self) -> None:
        self._server, self.port, self._health = await start_server(
            self._add_services, self._names, self._host, self._requested_port, self._tls
        )

    async def _stop(self) -> None:
        if self._server is None:
            return
        log.info("stopping: draining in-flight calls for up to %.0f s", self._grace_s)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(self._grace_s)
        self._server = None
