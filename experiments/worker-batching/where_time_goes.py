"""Where the embedded worker's time goes under continuous batching: articles through the service and a worker in
one process (real gRPC on loopback), N in flight; time and tokens per kind of forward, the merges' share, the
prefill tokens read, and the process's peak RSS.

    .venv/bin/python experiments/worker-batching/where_time_goes.py --documents 12 --in-flight 12 [--prefix-cache-tokens N]
        [--max-prefill-tokens N] [--max-batch N] [--calls-per-document N]
"""

import argparse
import asyncio
import collections
import resource
import time

import torch

from padellm.v1 import ner_pb2, ner_pb2_grpc
from padellm_ner.core import get_schema
from padellm_ner.data.formats import read_corpus
from padellm_ner.data.units import in_unit
from padellm_ner.grpc_common import channel, start_server
from service.orchestrator import Mode, Orchestrator, OrchestratorConfig
from service.server import SERVICE_NAME, NerService, add_to_server
from service.worker_pool import WorkerPool
from workers.backends.embedded import EmbeddedBackend
from workers.engine import decoder
from workers.engine.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_PREFILL_TOKENS, DEFAULT_PREFIX_CACHE_TOKENS
from workers.engine.loading import load_engine_model
from workers.server import SERVICE_NAME as WORKER
from workers.server import WorkerService
from workers.server import add_to_server as add_worker

spent: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])  # kind -> calls, seconds, tokens


def timed(kind_of, fn):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        kind, tokens = kind_of(*args, **kwargs)
        entry = spent[kind]
        entry[0] += 1
        entry[1] += time.perf_counter() - started
        entry[2] += tokens
        return result

    return wrapper


async def main(args) -> None:
    torch.set_num_threads(2)
    model = load_engine_model(args.model)
    inner = model.model.model  # the decoder stack: every forward of the engine goes through it
    inner.forward = timed(
        lambda *a, **k: ("prefill" if k["input_ids"].shape[1] > 6 else "decode", k["input_ids"].numel()),
        inner.forward,
    )
    decoder.DecodeBatch.merge = timed(lambda self, other: ("merge", len(other)), decoder.DecodeBatch.merge)
    articles = in_unit(read_corpus(args.data).documents, "document")[: args.documents]
    backend = EmbeddedBackend(
        model,
        prefix_cache_tokens=args.prefix_cache_tokens,
        max_prefill_tokens=args.max_prefill_tokens,
        max_batch=args.max_batch,
    )
    await backend.start()
    worker_server, worker_port, _ = await start_server(add_worker(WorkerService(backend)), [WORKER], "127.0.0.1", 0)
    pool = WorkerPool([f"127.0.0.1:{worker_port}"])
    await pool.start()
    config = OrchestratorConfig(
        mode=Mode.MULTI,
        call_deadline_s=600,
        budget_per_window_s=0.0,
        max_in_flight_per_document=args.calls_per_document,
    )
    service = NerService(Orchestrator(pool, config), max_documents=64)
    server, port, _ = await start_server(add_to_server(service), [SERVICE_NAME], "127.0.0.1", 0)
    schema = get_schema("conll03")
    try:
        async with channel(f"127.0.0.1:{port}") as ch:
            stub = ner_pb2_grpc.NerServiceStub(ch)
            slots = asyncio.Semaphore(args.in_flight)

            async def one(i: int, text: str) -> None:
                async with slots:
                    document = ner_pb2.Document(id=f"d{i}", text=text, schema=schema.name)
                    await stub.Recognize(ner_pb2.RecognizeRequest(document=document))

            started = time.perf_counter()
            await asyncio.gather(*(one(i, a.text) for i, a in enumerate(articles)))
            elapsed = time.perf_counter() - started
    finally:
        await server.stop(0)
        await pool.stop()
        await worker_server.stop(0)
        await backend.stop()
    print(
        f"{len(articles)} articles, {args.in_flight} in flight, prefix cache {args.prefix_cache_tokens} tokens, "
        f"prefill budget {args.max_prefill_tokens} tokens, batch {args.max_batch}, "
        f"{args.calls_per_document} calls per document: "
        f"{elapsed:.1f} s, {len(articles) / elapsed:.3f} articles/s, {backend.batches} admissions"
    )
    print(f"{'kind':8} {'calls':>6} {'seconds':>8} {'share':>6} {'tokens (merge: rows)':>22}")
    for kind, (calls, seconds, tokens) in sorted(spent.items()):
        print(f"{kind:8} {calls:6d} {seconds:8.1f} {seconds / elapsed:6.1%} {tokens:22d}")
    print(f"prefill tokens read (engine stats): {backend.stats.prefill_tokens}")
    print(f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/datasets/conll2003/original/test.txt")
    parser.add_argument("--model", default="models/padellm-conll03")
    parser.add_argument("--documents", type=int, default=12)
    parser.add_argument("--in-flight", type=int, default=12)
    parser.add_argument("--prefix-cache-tokens", type=int, default=DEFAULT_PREFIX_CACHE_TOKENS)
    parser.add_argument("--max-prefill-tokens", type=int, default=DEFAULT_MAX_PREFILL_TOKENS)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--calls-per-document", type=int, default=OrchestratorConfig.max_in_flight_per_document)
    asyncio.run(main(parser.parse_args()))
