"""Serving benchmark: what gRPC and orchestration add over the engine in-process, and documents/s with one
and with two model workers. One run, side by side, on the same documents.

1. overhead: sequential documents, (a) the embedded engine called in-process, (b) the same engine behind a
   worker's gRPC server and the orchestrator (multi mode), through the public NER API on loopback, in the same
   process with the same threads; the two paths alternate document by document. Reported: mean latency of
   each, the relative overhead, the median per-document difference, and the worker's admissions per
   document (the times its calls joined the worker's running batch).
2. throughput: N worker processes (`padellm-ner worker`, cores split between them), the orchestrator and the
   public API here, C documents in flight; documents/s for each N and each C (e.g. 1, 4 and 16 in flight: how
   far concurrent documents share the workers' forwards), with each C's ratio to the first.
3. backends (with a vLLM server): one worker on the embedded engine and one on the `vllm` backend, each behind
   its own orchestrator, the same documents at each C, the two alternating at every C; documents/s, latency
   p50/p95 and micro-F1 (against the corpus's gold entities) side by side, and vLLM's ratio to the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import torch
from tqdm import tqdm

from padellm.v1 import ner_pb2, ner_pb2_grpc
from padellm_ner.core import Document, LabelSchema, set_scores
from padellm_ner.grpc_common import channel, start_server
from service.orchestrator import MentionStart, Mode, Orchestrator, OrchestratorConfig
from service.server import SERVICE_NAME, NerService, add_to_server
from service.worker_pool import WorkerPool

WARMUP = ["Warm-up sentence about Acme Corp in Springfield .", "Another warm-up line by John Doe ."]
# Throughput runs measure how fast documents get through, not whether they meet a service's deadlines: calls
# get ten minutes and documents no budget, so that a queue at the worker shows as time, not as errors. A
# document that fails all the same is counted, and the run goes on.
THROUGHPUT_CALL_DEADLINE_S = 600.0


def _ms(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "mean_ms": statistics.fmean(values) * 1000,
        "p50_ms": values[len(values) // 2] * 1000,
        "p95_ms": values[min(len(values) - 1, int(0.95 * (len(values) - 1) + 0.5))] * 1000,
    }


async def overhead(
    engine_model,
    texts: list[str],
    schema: LabelSchema,
    mode: str = "multi",
    lookup_tokens: int | None = None,
    mention_start: MentionStart = MentionStart.PER_LABEL,
) -> dict:
    """Both paths on every document, interleaved: document i goes through the in-process engine and through
    gRPC + orchestrator back to back (the order alternating between documents), so a drift of the machine's
    speed during the run (other load, frequency) falls on both paths alike instead of on whichever ran last."""
    from workers.backends.embedded import EmbeddedBackend
    from workers.engine.lookup import DEFAULT_LOOKUP_TOKENS
    from workers.engine.padellm import PadellmEngine
    from workers.server import SERVICE_NAME as WORKER
    from workers.server import WorkerService
    from workers.server import add_to_server as add_worker

    # The in-process comparator does the decoding work the served path does: in multi mode a Count call returns
    # its counts before any Mention call is asked, so counts are decoded to their stop token and mentions read on
    # the document's cache; batch mode (one Extract call) runs the engine itself on the worker.
    lookup_tokens = DEFAULT_LOOKUP_TOKENS if lookup_tokens is None else lookup_tokens
    engine = PadellmEngine(engine_model, one_call=mode == "batch", lookup_tokens=lookup_tokens)
    loop = asyncio.get_running_loop()
    backend = EmbeddedBackend(engine_model, lookup_tokens=lookup_tokens)
    await backend.start()
    worker_server, worker_port, _ = await start_server(add_worker(WorkerService(backend)), [WORKER], "127.0.0.1", 0)
    pool = WorkerPool([f"127.0.0.1:{worker_port}"])
    await pool.start()
    service = NerService(Orchestrator(pool, OrchestratorConfig(mode=Mode(mode), mention_start=mention_start)))
    server, port, _ = await start_server(add_to_server(service), [SERVICE_NAME], "127.0.0.1", 0)
    direct, served, batches = [], [], []
    try:
        async with channel(f"127.0.0.1:{port}") as ch:
            stub = ner_pb2_grpc.NerServiceStub(ch)

            async def in_process(text: str) -> float:
                # on a thread, as the worker runs it, so the event loop stays free in both paths
                started = time.perf_counter()
                await loop.run_in_executor(None, engine.recognize, text, schema)
                return time.perf_counter() - started

            async def through_grpc(i: int, text: str) -> float:
                started = time.perf_counter()
                await stub.Recognize(
                    ner_pb2.RecognizeRequest(document=ner_pb2.Document(id=f"d{i}", text=text, schema=schema.name))
                )
                return time.perf_counter() - started

            for i, text in enumerate(WARMUP):  # warm-up texts outside the measured set: no cached prefix is reused
                await in_process(text)
                await through_grpc(-1 - i, text)
            for i, text in enumerate(tqdm(texts, desc=f"in-process vs gRPC + orchestrator ({mode})", unit="doc")):
                before = backend.batches
                if i % 2 == 0:
                    direct.append(await in_process(text))
                    served.append(await through_grpc(i, text))
                else:
                    served.append(await through_grpc(i, text))
                    direct.append(await in_process(text))
                batches.append(backend.batches - before)
    finally:
        await server.stop(0)
        await pool.stop()
        await worker_server.stop(0)
        await backend.stop()
    a, b = _ms(direct), _ms(served)
    paired = sorted((s - d) * 1000 for s, d in zip(served, direct))
    return {
        "in_process": a,
        "grpc_orchestrated": b,
        "mode": mode,
        "mention_start": mention_start.value,
        "overhead_ratio": b["mean_ms"] / a["mean_ms"] - 1.0,
        "paired_difference_ms_p50": paired[len(paired) // 2],
        # the times Count/Mention calls joined the worker's running batch (multi mode); Extract calls (batch mode) too
        "worker_admissions_per_document_mean": statistics.fmean(batches),
    }


async def _documents_through(stub, texts: list[str], schema: LabelSchema, run: str, concurrency: int, desc: str):
    """Every text through the public API, `concurrency` in flight: (seconds, latency per document, records with
    None where a document failed, failure codes)."""
    slots = asyncio.Semaphore(concurrency)
    failed: list[str] = []
    latencies: list[float] = []
    records: list = [None] * len(texts)
    bar = tqdm(total=len(texts), desc=desc, unit="doc")

    async def one(i: int, text: str) -> None:
        async with slots:
            started = time.perf_counter()
            try:
                reply = await stub.Recognize(
                    ner_pb2.RecognizeRequest(document=ner_pb2.Document(id=f"{run}-{i}", text=text, schema=schema.name))
                )
                records[i] = reply.record
                latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as error:
                failed.append(error.code().name)
            bar.update(1)

    started = time.perf_counter()
    await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))
    elapsed = time.perf_counter() - started
    bar.close()
    return elapsed, latencies, records, failed


def _rate(documents: int, elapsed: float, failed: list[str], concurrency: int) -> dict:
    return {
        "concurrency": concurrency,
        "documents": documents,
        "failed": len(failed),
        "failures": sorted(set(failed)),
        "seconds": elapsed,
        "documents_per_s": (documents - len(failed)) / elapsed,
    }


def _micro_f1(records: list, documents: list[Document]) -> float:
    """The paper's set-based micro-F1 of the records against the documents' gold entities (a failed document
    counts as predicting nothing)."""
    pairs = []
    for record, document in zip(records, documents):
        predicted: dict[str, list[str]] = {}
        for entity in record.entities if record is not None else ():
            predicted.setdefault(entity.label, []).append(entity.text)
        pairs.append((predicted, document.mentions_by_label()))
    return set_scores(pairs).micro_f1


def _spawn_worker(threads: int, model_args: list[str]) -> tuple[subprocess.Popen, str]:
    cli = str(Path(sys.executable).parent / "padellm-ner")
    args = [cli, "worker", "--port", "0", *model_args]
    env = {**os.environ, "PADELLM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert process.stdout is not None  # stdout=PIPE
    line = process.stdout.readline()
    if "ready on" not in line:
        process.kill()
        raise RuntimeError(f"worker did not start: {line!r}")
    return process, line.strip().rsplit(" ", 1)[-1]


async def throughput(
    workers: int,
    texts: list[str],
    schema: LabelSchema,
    concurrencies: list[int],
    model_args: list[str],
    cores: int,
    mention_start: MentionStart = MentionStart.PER_LABEL,
) -> list[dict]:
    """Documents/s of `workers` worker processes at each number of documents in flight (same workers, warm)."""
    processes = [_spawn_worker(max(1, cores // workers), model_args) for _ in range(workers)]
    results: list[dict] = []
    try:
        pool = WorkerPool([address for _, address in processes])
        await pool.start()
        config = OrchestratorConfig(
            mode=Mode.MULTI,
            mention_start=mention_start,
            call_deadline_s=THROUGHPUT_CALL_DEADLINE_S,
            budget_per_window_s=0.0,
        )
        service = NerService(Orchestrator(pool, config), max_documents=max(concurrencies))
        server, port, _ = await start_server(add_to_server(service), [SERVICE_NAME], "127.0.0.1", 0)
        try:
            async with channel(f"127.0.0.1:{port}") as ch:
                stub = ner_pb2_grpc.NerServiceStub(ch)
                await asyncio.gather(
                    *(
                        stub.Recognize(
                            ner_pb2.RecognizeRequest(document=ner_pb2.Document(id=f"w{i}", text=t, schema=schema.name))
                        )
                        for i, t in enumerate(WARMUP * workers)
                    )
                )
                for concurrency in concurrencies:
                    elapsed, _, _, failed = await _documents_through(
                        stub,
                        texts,
                        schema,
                        f"t{concurrency}",
                        concurrency,
                        f"{workers} worker(s), {concurrency} in flight",
                    )
                    results.append(
                        {
                            "workers": workers,
                            **_rate(len(texts), elapsed, failed, concurrency),
                            "threads_per_worker": max(1, cores // workers),
                        }
                    )
        finally:
            await server.stop(0)
            await pool.stop()
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait(timeout=60)
    for result in results:  # what more documents in flight bring, against the fewest
        result["vs_fewest_in_flight"] = result["documents_per_s"] / results[0]["documents_per_s"]
    return results


async def backends(
    documents: list[Document],
    schema: LabelSchema,
    concurrencies: list[int],
    worker_args: dict[str, list[str]],
    cores: int,
) -> list[dict]:
    """One worker per backend (`worker_args`: name -> the worker command's options), each behind its own
    orchestrator and public API here; at each number in flight every backend reads the same documents, the
    backends one after another (so they never share the cores), in an order that alternates between levels."""
    texts = [d.text for d in documents]
    names = list(worker_args)
    # an HTTP backend's worker only relays: one thread; the model server has the cores
    processes = {
        name: _spawn_worker(cores if "--backend" not in args else 1, args) for name, args in worker_args.items()
    }
    results: list[dict] = []
    stack = contextlib.AsyncExitStack()
    try:
        stubs = {}
        for name, (_, address) in processes.items():
            pool = await stack.enter_async_context(WorkerPool([address]))
            config = OrchestratorConfig(
                mode=Mode.MULTI, call_deadline_s=THROUGHPUT_CALL_DEADLINE_S, budget_per_window_s=0
            )
            service = NerService(Orchestrator(pool, config), max_documents=max(concurrencies))
            server, port, _ = await start_server(add_to_server(service), [SERVICE_NAME], "127.0.0.1", 0)
            stack.push_async_callback(server.stop, 0)
            ch = await stack.enter_async_context(channel(f"127.0.0.1:{port}"))
            stubs[name] = ner_pb2_grpc.NerServiceStub(ch)
            for i, text in enumerate(WARMUP):  # outside the measured set: no cached prefix is reused
                await stubs[name].Recognize(
                    ner_pb2.RecognizeRequest(document=ner_pb2.Document(id=f"w{i}", text=text, schema=schema.name))
                )
        for level, concurrency in enumerate(concurrencies):
            for name in names if level % 2 == 0 else names[::-1]:
                elapsed, latencies, records, failed = await _documents_through(
                    stubs[name], texts, schema, f"{name}{concurrency}", concurrency, f"{name}, {concurrency} in flight"
                )
                results.append(
                    {
                        "backend": name,
                        **_rate(len(texts), elapsed, failed, concurrency),
                        "latency": _ms(latencies) if latencies else {},
                        "micro_f1": _micro_f1(records, documents),
                        "model": next((r.model for r in records if r is not None), ""),
                        "model_version": next((r.model_version for r in records if r is not None), ""),
                    }
                )
    finally:
        await stack.aclose()
        for process, _ in processes.values():
            process.terminate()
            process.wait(timeout=60)
    first = names[0]
    for result in results:  # each backend against the first (the embedded engine) at the same number in flight
        same = next(r for r in results if r["backend"] == first and r["concurrency"] == result["concurrency"])
        result[f"vs_{first}"] = result["documents_per_s"] / same["documents_per_s"]
    return results


def _overhead_lines(o: dict) -> list[str]:
    return [
        f"{'path':<28} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9}",
        f"{'in-process engine':<28} {o['in_process']['mean_ms']:9.1f} {o['in_process']['p50_ms']:9.1f} "
        f"{o['in_process']['p95_ms']:9.1f}",
        f"{'gRPC + orchestrator':<28} {o['grpc_orchestrated']['mean_ms']:9.1f} {o['grpc_orchestrated']['p50_ms']:9.1f} "
        f"{o['grpc_orchestrated']['p95_ms']:9.1f}",
        f"overhead of gRPC + orchestration ({o['mode']} mode, mentions start {o['mention_start']}): "
        f"{o['overhead_ratio'] * 100:+.1f} % of mean document "
        f"latency; median per-document difference {o['paired_difference_ms_p50']:+.1f} ms"
        + (
            f"; {o['worker_admissions_per_document_mean']:.2f} worker admissions per document "
            "(calls joining its running batch)"
            if o["mode"] == "multi"
            else ""
        ),
    ]


def table(report: dict) -> str:
    lines = _overhead_lines(report["overhead"]) if "overhead" in report else []
    if report["throughput"]:
        lines += [
            "",
            f"{'workers':<8} {'docs/s':>8} {'threads each':>13} {'in flight':>10} {'x fewest in flight':>19} "
            f"{'failed':>7}",
        ]
    for t in report["throughput"]:
        lines.append(
            f"{t['workers']:<8} {t['documents_per_s']:8.3f} {t['threads_per_worker']:13d} {t['concurrency']:10d} "
            f"{t['vs_fewest_in_flight']:19.2f} {t['failed']:7d}"
        )
    if report.get("backends"):
        first = report["backends"][0]["backend"]
        lines += [
            "",
            f"{'backend':<10} {'in flight':>10} {'docs/s':>8} {'x ' + first:>11} {'p50 ms':>9} {'p95 ms':>9} "
            f"{'micro-F1':>9} {'failed':>7}",
        ]
        for b in sorted(report["backends"], key=lambda b: (b["concurrency"], b["backend"] != first)):
            lines.append(
                f"{b['backend']:<10} {b['concurrency']:10d} {b['documents_per_s']:8.3f} {b['vs_' + first]:11.2f} "
                f"{b['latency'].get('p50_ms', float('nan')):9.1f} {b['latency'].get('p95_ms', float('nan')):9.1f} "
                f"{b['micro_f1'] * 100:9.2f} {b['failed']:7d}"
            )
    return "\n".join(lines)


async def run(
    engine_model,
    documents: list[Document],
    schema: LabelSchema,
    *,
    worker_counts: list[int],
    concurrencies: list[int],
    model_args: list[str],
    mode: str = "multi",
    lookup_tokens: int | None = None,
    mention_start: MentionStart = MentionStart.PER_LABEL,
    other_backends: dict[str, list[str]] | None = None,
    measure_overhead: bool = True,
) -> dict:
    """`model_args`: the worker command's model options (--model, --base-model, --dtype, --lookup-tokens), so the
    spawned workers load and decode as the in-process engine does. `other_backends`: name -> worker options of
    backends to measure beside the embedded engine (e.g. vllm: --backend vllm --vllm-url ...)."""
    cores = torch.get_num_threads()
    texts = [d.text for d in documents]
    report: dict = {
        "documents": len(texts),
        "threads": cores,
        "dtype": engine_model.info["dtype"],
        "lookup_tokens": lookup_tokens,
    }
    if measure_overhead:
        report["overhead"] = await overhead(engine_model, texts, schema, mode, lookup_tokens, mention_start)
    report["throughput"] = [
        result
        for n in worker_counts
        for result in await throughput(n, texts, schema, concurrencies, model_args, cores, mention_start)
    ]
    if other_backends:
        report["backends"] = await backends(
            documents, schema, concurrencies, {"embedded": model_args, **other_backends}, cores
        )
    return report
