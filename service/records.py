"""The entity record: what the service returns over gRPC and publishes to Kafka, documented and versioned.

JSON form (the Kafka value; gRPC `padellm.v1.EntityRecord` carries the same fields):

    {"record_version": "padellm-ner.entity-record/v1",
     "id": "doc-1",
     "entities": [{"label": "ORG", "text": "EU", "start": 0, "end": 2, "probability": 0.998, "k": 1, "window": 0}],
     "counts": [{"label": "ORG", "count": 1, "probability": 0.99, "status": "ok"}, ...],
     "model": "padellm-conll03", "model_version": "0.1.0",
     "schema": "conll03", "schema_version": "1",
     "timings": {"wall_ms": 412.0, "count_step_ms": 150.2, "mention_step_ms": 250.1, "paper_latency_ms": 380.0},
     "removed_by_dedup": 0, "ungrounded": 0, "truncated": 0, "windows": 1}

`start`/`end` are character offsets into the document as sent (end exclusive), or null (JSON) / absent (gRPC)
for a mention that could not be placed in the text. A document is read as `windows` runs of whole sentences; `k` is
a mention's index among its label's mentions in its `window`, and each label's count is summed over the
windows. A new field may be added within v1; a change of meaning gets a new version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from padellm.v1 import ner_pb2
from padellm_ner.core import CountStatus, DocumentPrediction
from padellm_ner.wire import COUNT_STATUS_TO_PROTO, count_status_of

RECORD_VERSION = "padellm-ner.entity-record/v1"
SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class Timings:
    wall_ms: float = 0.0
    count_step_ms: float = 0.0
    mention_step_ms: float = 0.0
    paper_latency_ms: float = 0.0


@dataclass(frozen=True)
class RecordEntity:
    label: str
    text: str
    start: int | None  # None: not placed in the text
    end: int | None
    probability: float | None
    k: int
    window: int


@dataclass(frozen=True)
class RecordCount:
    label: str
    count: int
    probability: float
    status: CountStatus  # a str enum: "ok", "empty", ... in JSON


@dataclass(frozen=True)
class EntityRecord:
    id: str
    entities: list[RecordEntity]
    counts: list[RecordCount]
    model: str
    model_version: str
    schema: str
    timings: Timings = field(default_factory=Timings)
    removed_by_dedup: int = 0
    ungrounded: int = 0
    truncated: int = 0
    windows: int = 1
    schema_version: str = SCHEMA_VERSION
    record_version: str = RECORD_VERSION

    @classmethod
    def from_prediction(
        cls,
        document_id: str,
        prediction: DocumentPrediction,
        *,
        model: str,
        model_version: str,
        schema: str,
        timings: Timings,
    ) -> EntityRecord:
        return cls(
            id=document_id,
            entities=[
                RecordEntity(m.label, m.text, m.start, m.end, m.probability, m.k, m.window) for m in prediction.mentions
            ],
            counts=[RecordCount(c.label, c.count, c.probability, c.status) for c in prediction.counts],
            model=model,
            model_version=model_version,
            schema=schema,
            timings=timings,
            removed_by_dedup=len(prediction.removed_by_dedup),
            ungrounded=prediction.ungrounded,
            truncated=len(prediction.truncated),
            windows=prediction.windows,
        )

    def to_json(self) -> dict:
        return asdict(self)

    def to_proto(self) -> ner_pb2.EntityRecord:
        return ner_pb2.EntityRecord(
            record_version=self.record_version,
            id=self.id,
            entities=[
                ner_pb2.Entity(
                    label=e.label,
                    text=e.text,
                    start=e.start,  # None leaves the optional field absent
                    end=e.end,
                    probability=e.probability or 0.0,
                    k=e.k,
                    window=e.window,
                )
                for e in self.entities
            ],
            counts=[
                ner_pb2.LabelCount(
                    label=c.label,
                    count=c.count,
                    probability=c.probability,
                    status=COUNT_STATUS_TO_PROTO[c.status],
                )
                for c in self.counts
            ],
            model=self.model,
            model_version=self.model_version,
            schema=self.schema,
            schema_version=self.schema_version,
            timings=ner_pb2.Timings(**asdict(self.timings)),
            removed_by_dedup=self.removed_by_dedup,
            ungrounded=self.ungrounded,
            truncated=self.truncated,
            windows=self.windows,
        )

    @classmethod
    def from_proto(cls, message: ner_pb2.EntityRecord) -> EntityRecord:
        return cls(
            id=message.id,
            entities=[
                RecordEntity(
                    e.label,
                    e.text,
                    e.start if e.HasField("start") else None,
                    e.end if e.HasField("end") else None,
                    e.probability,
                    e.k,
                    e.window,
                )
                for e in message.entities
            ],
            counts=[RecordCount(c.label, c.count, c.probability, count_status_of(c.status)) for c in message.counts],
            model=message.model,
            model_version=message.model_version,
            schema=message.schema,
            timings=Timings(
                message.timings.wall_ms,
                message.timings.count_step_ms,
                message.timings.mention_step_ms,
                message.timings.paper_latency_ms,
            ),
            removed_by_dedup=message.removed_by_dedup,
            ungrounded=message.ungrounded,
            truncated=message.truncated,
            windows=message.windows,
            schema_version=message.schema_version,
            record_version=message.record_version,
        )
