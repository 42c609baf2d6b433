"""The two images, built by `scripts/images.sh build` (buildah), run as the chart runs them: uid 10001, a
read-only root filesystem (podman's --read-only keeps a tmpfs /tmp, as the chart's emptyDir does), this host's
rlimits. Skipped, saying why, where podman or the images are absent; `.ci/run` builds them first."""

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from serving import entities, ner_client, recognize

from padellm_ner.grpc_common import channel

CHART = Path(__file__).resolve().parents[1] / "charts" / "padellm-ner" / "Chart.yaml"
VERSION = next(
    line.split(":", 1)[1].strip().strip('"') for line in CHART.read_text().splitlines() if line.startswith("appVersion")
)
SERVICE_IMAGE = f"localhost/padellm-ner/service:{VERSION}"
WORKER_IMAGE = f"localhost/padellm-ner/worker:{VERSION}"
TEXT = "EU rejects German call to boycott British lamb ."


def image_exists(image: str) -> bool:
    return shutil.which("podman") is not None and subprocess.run(["podman", "image", "exists", image]).returncode == 0


pytestmark = [
    pytest.mark.skipif(
        not (image_exists(SERVICE_IMAGE) and image_exists(WORKER_IMAGE)),
        reason=f"{SERVICE_IMAGE} and {WORKER_IMAGE} are not built here: run `BASE=local bash scripts/images.sh build`",
    ),
    pytest.mark.timeout(900),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman_run(image: str, *args: str, detach: bool = True) -> str | subprocess.CompletedProcess:
    """A container as the chart runs it: uid 10001, read-only root, host network (loopback), this host's rlimits."""
    name = f"padellm-test-{uuid.uuid4().hex[:8]}"
    command = [
        "podman", "--runtime", "runc", "run", "--name", name, "--user", "10001:10001", "--read-only",
        "--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
        "--env", "PADELLM_THREADS=1",
    ]  # fmt: skip
    if detach:
        subprocess.run([*command, "-d", image, *args], check=True, capture_output=True)
        return name
    return subprocess.run([*command, "--rm", image, *args], capture_output=True, text=True, timeout=300)


def remove(name: str) -> str:
    logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True).stderr
    subprocess.run(["podman", "rm", "-f", "-t", "5", name], capture_output=True)
    return logs


async def serving_health(address: str, timeout_s: float = 180.0) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with channel(address) as ch:
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
        except Exception:
            pass
        await asyncio.sleep(1.0)
    return False


def test_the_service_image_has_no_torch_and_runs_its_commands():
    for args in (("stream", "--help"), ("serve", "--help"), ("worker", "--help")):
        result = podman_run(SERVICE_IMAGE, *args, detach=False)
        assert result.returncode == 0 and "usage: padellm-ner" in result.stdout, result.stderr
    no_torch = podman_run(SERVICE_IMAGE, "recognize", TEXT, detach=False)  # the embedded engine needs torch
    assert no_torch.returncode != 0


async def test_worker_image_serves_and_the_service_image_answers_a_recognize():
    worker_port, api_port = free_port(), free_port()
    worker = podman_run(WORKER_IMAGE, "worker", "--host", "127.0.0.1", "--port", str(worker_port))
    api = podman_run(
        SERVICE_IMAGE, "serve", "--host", "127.0.0.1", "--port", str(api_port), "--workers", f"127.0.0.1:{worker_port}"
    )
    try:
        assert await serving_health(f"127.0.0.1:{worker_port}"), "the worker container never reported SERVING"
        assert await serving_health(f"127.0.0.1:{api_port}"), "the API container never reported SERVING"
        async with ner_client(f"127.0.0.1:{api_port}") as stub:
            record = await recognize(stub, "image-test", TEXT, deadline=120)
        assert record.id == "image-test"
        # the image's model (converted at build time from the same pinned wheel) finds what the shipped one does
        assert ("ORG", "EU") in {(e[0], e[1]) for e in entities(record)}
    finally:
        logs = remove(api) + remove(worker)
    assert "Traceback" not in logs, logs


async def test_the_tgi_sidecar_worker_runs_from_the_service_image(serving_engine_model):
    """Beside TGI the worker is a thin HTTP client: the service image (no torch) runs it, against a real HTTP
    server speaking TGI's API on loopback."""
    from workers.tgi_api import TgiApiServer

    worker_port, api_port = free_port(), free_port()
    async with TgiApiServer(serving_engine_model) as tgi:
        worker = podman_run(
            SERVICE_IMAGE, "worker", "--backend", "tgi", "--tgi-url", f"http://127.0.0.1:{tgi.port}",
            "--schemas", "conll03", "--host", "127.0.0.1", "--port", str(worker_port),
        )  # fmt: skip
        api = podman_run(
            SERVICE_IMAGE,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--workers",
            f"127.0.0.1:{worker_port}",
        )
        try:
            assert await serving_health(f"127.0.0.1:{api_port}")
            async with ner_client(f"127.0.0.1:{api_port}") as stub:
                record = await recognize(stub, "sidecar", TEXT, deadline=120)
            assert record.id == "sidecar" and len(record.counts) == 4
        finally:
            logs = remove(api) + remove(worker)
    assert "Traceback" not in logs, logs
