"""What both gRPC servers (worker and public API) and their clients share: TLS from certificate files,
health checking, reflection, the mapping of errors to statuses, and a graceful lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from .errors import ErrorCode, PadellmError
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


Observer = Callable[[str, str, BaseException | None], None]  # (method, status code name, error or None)


def _status_details(error: PadellmError) -> list[any_pb2.Any]:
    details = []
    if error.code is ErrorCode.INVALID_ARGUMENT and error.field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=str(error))
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=error.retry_after_s))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        message = any_pb2.Any()
        message.Pack(detail)
        packed.append(message)
    return packed


def status_of(error: PadellmError | grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status of one of our errors, or of a call to a worker that failed after its retries (its code
    kept, its message saying where it came from): what a caller sees, whether as a status or in a record."""
    if isinstance(error, PadellmError):
        return grpc.StatusCode[error.code.value], str(error)
    return error.code(), f"model worker call failed: {error.details()}"


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """The one place errors become gRPC statuses. A `PadellmError` gets its code, its message and google.rpc
    details (BadRequest with the field at fault, RetryInfo); a failed call to a downstream gRPC service keeps that
    call's code; anything else is INTERNAL (and logged). `observe` sees every call's outcome (metrics)."""

    def __init__(self, observe: Observer | None = None):
        self._observe = observe or (lambda method, code, error: None)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(method, handler.unary_unary), **options)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._streaming(method, handler.stream_stream), **options)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._streaming(method, handler.unary_stream), **options)
        return grpc.stream_unary_rpc_method_handler(self._unary(method, handler.stream_unary), **options)

    def _unary(self, method: str, behaviour):
        async def call(request, context):
            try:
                response = await behaviour(request, context)
            except Exception as error:
                await self._abort(method, context, error)
            self._observe(method, "OK", None)
            return response

        return call

    def _streaming(self, method: str, behaviour):
        async def call(request, context):
            try:
                async for response in behaviour(request, context):
                    yield response
            except Exception as error:
                await self._abort(method, context, error)
            self._observe(method, "OK", None)

        return call

    async def _abort(self, method: str, context: grpc.aio.ServicerContext, error: Exception) -> None:
        if isinstance(error, grpc.aio.AbortError):  # the handler aborted with its own status
            self._observe(method, context.code().name if context.code() else "UNKNOWN", error)
            raise error
        if isinstance(error, PadellmError | grpc.aio.AioRpcError):
            code, message = status_of(error)
            details = _status_details(error) if isinstance(error, PadellmError) else []
        else:
            log.exception("%s failed", method)
            code, message, details = grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}", []
        self._observe(method, code.name, error)
        status = rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=details))
        await context.abort(status.code, status.details, status.trailing_metadata)


async def start_server(
    add_services,
    service_names: list[str],
    host: str,
    port: int,
    tls: TlsFiles | None = None,
    observe: Observer | None = None,
    max_connection_age_s: float | None = None,
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """A started grpc.aio server with the given services, health checking and reflection; returns its port.
    `max_connection_age_s` closes each client connection (gracefully, GOAWAY) after that age, so that clients
    balancing over DNS re-resolve and find servers added since (gRFC A9)."""
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.so_reuseport", 0)]
    if max_connection_age_s:
        options += [
            ("grpc.max_connection_age_ms", int(max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(max_connection_age_s * 1000)),
        ]
    server = grpc.aio.server(interceptors=[ErrorInterceptor(observe)], options=options)
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
    NOT_SERVING, lets calls in flight finish for `grace_s` and stops.

    With `health_port`, the same health statuses are also served in plaintext on that port, alone: kubelet's gRPC
    probes speak no TLS, so a TLS server is probed there."""

    def __init__(
        self,
        add_services: Callable[[grpc.aio.Server], None],
        service_names: list[str],
        host: str,
        port: int,
        tls: TlsFiles | None = None,
        grace_s: float = 10.0,
        observe: Observer | None = None,
        health_port: int | None = None,
        max_connection_age_s: float | None = None,
    ):
        self._add_services, self._names, self._host, self._requested_port = add_services, service_names, host, port
        self._tls, self._grace_s, self._observe = tls, grace_s, observe
        self._requested_health_port, self._max_connection_age_s = health_port, max_connection_age_s
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self.port = 0
        self.health_port = 0

    async def _start(self) -> None:
        self._server, self.port, self._health = await start_server(
            self._add_services,
            self._names,
            self._host,
            self._requested_port,
            self._tls,
            self._observe,
            self._max_connection_age_s,
        )
        if self._requested_health_port is not None:
            self._health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
            address = f"{self._host}:{self._requested_health_port}"
            self.health_port = self._health_server.add_insecure_port(address)
            if self.health_port == 0:
                await self._server.stop(None)
                raise OSError(f"cannot listen on {address}")
            await self._health_server.start()

    async def set_serving(self, serving: bool) -> None:
        """Report every service of this server (and the server as a whole) as SERVING or NOT_SERVING."""
        if self._health is None:
            return
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self._names):
            await self._health.set(name, status)

    async def _stop(self) -> None:
        if self._server is None:
            return
        log.info("stopping: draining in-flight calls for up to %.0f s", self._grace_s)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(self._grace_s)
        self._server = None
        if self._health_server is not None:
            await self._health_server.stop(None)
            self._health_server = None
