"""Peak memory and time of a real worker process on long documents in scripts it reads poorly (8,000 characters
of emoji, of Japanese) and on an English article, through the orchestrator as the service sends them.

    .venv/bin/python experiments/worker-memory/measure.py
"""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from padellm_ner.core import get_schema
from service.orchestrator import Orchestrator, OrchestratorConfig
from service.worker_pool import WorkerPool

CLI = str(Path(sys.executable).parent / "padellm-ner")
DOCUMENTS = {
    "emoji, 8,001 characters": "😀🎉🚀" * 2667,
    "Japanese, 8,050 characters": "東京都の新しい知事は明日記者会見を開く予定です" * 350,
    "English article, 2,844 characters": json.loads(Path("examples/documents.jsonl").read_text().splitlines()[4])[
        "text"
    ],
}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def start_worker() -> tuple[subprocess.Popen, str]:
    worker = subprocess.Popen(
        [CLI, "worker", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    return worker, worker.stdout.readline().strip().rsplit(" ", 1)[-1]


async def main() -> None:
    worker, address = start_worker()
    try:
        print(f"worker ready: peak RSS {peak_rss_mb(worker.pid):.0f} MB")
        async with WorkerPool([address]) as pool:
            orchestrator = Orchestrator(pool, OrchestratorConfig(model="measure"))
            for name, text in DOCUMENTS.items():
                started = time.perf_counter()
                record = await orchestrator.recognize("d", text, get_schema("conll03"))
                seconds = time.perf_counter() - started
                print(
                    f"{name}: {record.windows} windows, {len(record.entities)} entities, {seconds:.1f} s, "
                    f"worker peak RSS {peak_rss_mb(worker.pid):.0f} MB"
                )
    finally:
        worker.terminate()
        worker.wait(timeout=60)


if __name__ == "__main__":
    asyncio.run(main())
