"""The real processes: `padellm-ner worker`, `padellm-ner serve`, `padellm-ner recognize --endpoint`."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import REPO

CLI = str(Path(sys.executable).parent / "padellm-ner")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PADELLM_THREADS": "1", "PADELLM_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env
    )
    line = process.stdout.readline()  # "... ready on HOST:PORT"
    if "ready on" not in line:
        process.kill()
        raise AssertionError(f"{args[0]} did not start: {line!r} {process.stderr.read()[-2000:]}")
    return process, line.strip().rsplit(" ", 1)[-1]


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def test_worker_service_and_remote_recognize():
    worker_metrics_port = free_port()
    worker, worker_address = start("worker", "--port", "0", "--metrics-port", str(worker_metrics_port))
    metrics_port = free_port()
    try:
        service, address = start(
            "serve", "--port", "0", "--workers", worker_address, "--metrics-port", str(metrics_port)
        )
        try:
            result = subprocess.run(
                [
                    CLI,
                    "recognize",
                    "--endpoint",
                    address,
                    "--id",
                    "cli-doc",
                    "--json",
                    "EU rejects German call to boycott British lamb .",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
            record = json.loads(result.stdout)
            assert record["id"] == "cli-doc" and record["record_version"] == "padellm-ner.entity-record/v1"
            assert [c["label"] for c in record["counts"]] == ["ORG", "MISC", "PER", "LOC"]
            bad = subprocess.run(
                [CLI, "recognize", "--endpoint", address, "--id", "bad id", "x"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert bad.returncode == 2 and "INVALID_ARGUMENT" in bad.stderr
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
            assert 'padellm_requests_total{code="OK",method="Recognize"} 1.0' in metrics
            assert "padellm_step_latency_ms_bucket" in metrics
            worker_metrics = (
                urllib.request.urlopen(f"http://127.0.0.1:{worker_metrics_port}/metrics", timeout=10).read().decode()
            )
            assert 'padellm_worker_calls_total{code="OK",method="Count"}' in worker_metrics
            assert "padellm_worker_backend_up 1.0" in worker_metrics
        finally:
            assert stop(service) == 0  # graceful shutdown on SIGTERM
    finally:
        assert stop(worker) == 0
    logs = [json.loads(line) for line in worker.stderr.read().splitlines() if line.startswith("{")]
    assert any("worker serving on" in entry["msg"] for entry in logs)
