"""The asyncio orchestrator: one document in, one entity record out.

Multi mode (the paper's PaDeLLM-Multi as a distributed system): concurrent Count calls for every label, then
concurrent Mention calls for every (label, k), spread over the worker endpoints; then aggregation,
de-duplication and grounding from the core. Batch mode (PaDeLLM-Batch): one Extract call per document, the
worker batches it. Every call has a deadline; calls in flight are bounded by a semaphore shared by all
documents; retries happen in the worker pool. Latency is reported as wall time and as the paper accounts it
(the slowest sequence: its count plus its mention, as measured inside the workers).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Sequence

from padellm.v1 import worker_pb2
from padellm_ner.core import (
    DEFAULT_MAX_COUNT, CountResult, DedupPolicy, LabelSchema, MentionResult, aggregate, parse_counts,
)

from . import metrics
from .records import EntityRecord, Timings
from .worker_pool import WorkerPool

MULTI, BATCH = "multi", "batch"


@dataclass
class OrchestratorConfig:
    mode: str = MULTI
    call_deadline_s: float = 30.0
    max_in_flight: int = 256
    max_count: int = DEFAULT_MAX_COUNT
    dedup: str = DedupPolicy.KEEP_MAX.value
    model: str = "unknown"
    model_version: str = ""


class Orchestrator:
    def __init__(self, pool: WorkerPool, config: OrchestratorConfig | None = None):
        self.pool = pool
        self.config = config or OrchestratorConfig()
        if self.config.mode not in (MULTI, BATCH):
            raise ValueError(f"unknown mode {self.config.mode!r}; expected multi or batch")
        self._slots = asyncio.Semaphore(self.config.max_in_flight)

    async def _bounded(self, document_id: str, invoke):
        async with self._slots:
            return await self.pool.call(document_id, invoke)

    async def recognize(self, document_id: str, text: str, schema: LabelSchema,
                        labels: Sequence[str] | None = None) -> EntityRecord:
        labels = list(labels or schema.labels)
        started = time.perf_counter()
        deadline = self.config.call_deadline_s
        if self.config.mode == BATCH:
            response = await self._bounded(document_id, lambda stub: stub.Extract(
                worker_pb2.ExtractRequest(document_id=document_id, text=text, schema=schema.name, labels=labels),
                timeout=deadline))
            count_responses, mention_responses = list(response.counts), list(response.mentions)
            count_done = mention_done = time.perf_counter()
        else:
            count_responses = await asyncio.gather(*(
                self._bounded(document_id, lambda stub, label=label: stub.Count(
                    worker_pb2.CountRequest(document_id=document_id, text=text, schema=schema.name, label=label),
                    timeout=deadline))
                for label in labels))
            count_done = time.perf_counter()
            counts = parse_counts([CountResult(c.label, c.raw, c.logprob) for c in count_responses], self.config.max_count)
            asks = [(label, k, counts[label].value) for label in labels for k in range(1, counts[label].value + 1)]
            mention_responses = await asyncio.gather(*(
                self._bounded(document_id, lambda stub, a=a: stub.Mention(
                    worker_pb2.MentionRequest(document_id=document_id, text=text, schema=schema.name, label=a[0],
                                              count=a[2], k=a[1]), timeout=deadline))
                for a in asks))
            mention_done = time.perf_counter()
        count_results = [CountResult(c.label, c.raw, c.logprob, c.generated_tokens) for c in count_responses]
        mention_results = [MentionResult(m.label, m.k, m.raw, m.logprob, m.generated_tokens) for m in mention_responses]
        prediction = aggregate(text, labels, count_results, mention_results, language=schema.language,
                               dedup=self.config.dedup, max_count=self.config.max_count)
        wall = time.perf_counter() - started
        count_latency = {c.label: c.latency_ms for c in count_responses}
        paper = max([count_latency[m.label] + m.latency_ms for m in mention_responses] + list(count_latency.values()),
                    default=0.0)
        timings = Timings(wall_ms=wall * 1000, count_step_ms=(count_done - started) * 1000,
                          mention_step_ms=(mention_done - count_done) * 1000, paper_latency_ms=paper)
        metrics.observe_document(self.config.mode, timings, count_results, mention_results, prediction)
        return EntityRecord.from_prediction(document_id, prediction, model=self.config.model,
                                            model_version=self.config.model_version, schema=schema.name,
                                            timings=timings)
