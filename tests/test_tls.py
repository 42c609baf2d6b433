"""TLS and mutual TLS on both gRPC servers, from certificate files."""

import grpc
import pytest
from certs import make_pki
from serving import ner_client, ner_service, request, worker

from padellm_ner.grpc_common import TlsFiles
from workers.backends.embedded import EmbeddedBackend


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


async def test_mutual_tls_on_worker_and_service(serving_engine_model, pki):
    server_tls = TlsFiles(pki["server_cert"], pki["server_key"], pki["ca"])  # requires client certificates
    client_tls = TlsFiles(pki["client_cert"], pki["client_key"], pki["ca"])
    async with worker(EmbeddedBackend(serving_engine_model), tls=server_tls) as (target, _):
        target = target.replace("127.0.0.1", "localhost")
        async with ner_service([target], tls=server_tls, worker_tls=client_tls) as (service, _):
            service = service.replace("127.0.0.1", "localhost")
            async with ner_client(service, client_tls) as stub:
                record = (await stub.Recognize(request("d", "EU rejects German call ."), timeout=120)).record
                assert record.id == "d"
            # without a client certificate the handshake is refused
            async with ner_client(service, TlsFiles(ca=pki["ca"])) as stub:
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.Recognize(request("d", "EU rejects German call ."), timeout=10)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            # a plaintext client cannot talk to a TLS server
            async with ner_client(service) as stub:
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Recognize(request("d", "EU"), timeout=10)


async def test_server_tls_without_client_certificates(serving_engine_model, pki):
    tls = TlsFiles(pki["server_cert"], pki["server_key"])
    async with worker(EmbeddedBackend(serving_engine_model)) as (target, _):
        async with ner_service([target], tls=tls) as (service, _):
            async with ner_client(service.replace("127.0.0.1", "localhost"), TlsFiles(ca=pki["ca"])) as stub:
                record = (await stub.Recognize(request("d", "Peter Blackburn"), timeout=120)).record
                assert record.id == "d"


async def test_a_tls_server_answers_health_in_plaintext_on_its_health_port(pki):
    """Kubelet's gRPC probes speak no TLS: a TLS server also serves its health statuses, and nothing else, in
    plaintext on --health-port, and they follow the server's."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from padellm_ner.grpc_common import GrpcServer, channel
    from workers.server import SERVICE_NAME

    tls = TlsFiles(pki["server_cert"], pki["server_key"])
    async with GrpcServer(lambda server: None, [SERVICE_NAME], "127.0.0.1", 0, tls, health_port=0) as server:
        assert server.health_port and server.health_port != server.port
        async with channel(f"127.0.0.1:{server.health_port}") as plaintext:
            health = health_pb2_grpc.HealthStub(plaintext)
            for name in ("", SERVICE_NAME):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            await server.set_serving(False)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # the TLS port itself still refuses plaintext
        async with channel(f"127.0.0.1:{server.port}") as plaintext:
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=5)
