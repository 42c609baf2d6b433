"""Prediction files for scoring.

- `padellm-results`: the official repository's results file, a JSON list of
  `{"id", "texts", "pred": {label: [[mention, prob], ...]}, "gt": {label: [mention, ...]}, "latency"}`;
  it carries its own gold.
- documents: any corpus format the readers take (JSONL entities may add "probability", and may give a
  mention's "text" without offsets). A mention without a probability (absent or null) has none, and
  de-duplication leaves it alone (`core.dedup`).
"""

from __future__ import annotations

import json

from ..core.document import Document
from ..core.scoring import PredictionRecord, ScoredMention
from .jsonl import guess_language


def read_padellm_results(text: str, name: str = "results") -> list[PredictionRecord]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: not JSON: {error}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{name}: expected a JSON list of results")
    records = []
    for index, row in enumerate(rows):
        where = f"{name}: result {index}"
        if not isinstance(row, dict) or not isinstance(row.get("pred"), dict):
            raise ValueError(f"{where}: expected an object with 'pred' {{label: [[mention, prob], ...]}}")
        mentions = []
        for label, items in row["pred"].items():
            if not isinstance(items, list):
                raise ValueError(f"{where}: pred[{label!r}] must be a list")
            for item in items:
                if not (
                    isinstance(item, list)
                    and len(item) == 2
                    and isinstance(item[0], str)
                    and (item[1] is None or isinstance(item[1], (int, float)))
                ):
                    raise ValueError(f"{where}: pred[{label!r}] item {item!r} is not [mention, probability]")
                mentions.append(ScoredMention(label, item[0], None if item[1] is None else float(item[1])))
        gold = row.get("gt")
        if gold is not None and not (
            isinstance(gold, dict)
            and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in gold.values())
        ):
            raise ValueError(f"{where}: 'gt' must be {{label: [mention, ...]}}")
        text_ = row.get("texts", "")
        records.append(
            PredictionRecord(
                id=str(row.get("id", index)),
                text=text_,
                mentions=mentions,
                gold=gold,
                labels=list(row["pred"]),
                latency_s=row.get("latency"),
                language=guess_language(text_),
            )
        )
    return records


def write_padellm_results(records: list[PredictionRecord]) -> str:
    rows = []
    for record in records:
        pred: dict[str, list] = {label: [] for label in record.labels}
        for mention in record.mentions:
            pred.setdefault(mention.label, []).append([mention.text, mention.probability])
        rows.append(
            {"id": record.id, "texts": record.text, "pred": pred, "gt": record.gold or {}, "latency": record.latency_s}
        )
    return json.dumps(rows, ensure_ascii=False, indent=1)


def records_from_documents(documents: list[Document]) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            id=d.id,
            text=d.text,
            language=d.language,
            mentions=[ScoredMention(e.label, e.text, None, e.start, e.end) for e in d.entities],
        )
        for d in documents
    ]


def read_prediction_jsonl(text: str, name: str = "predictions") -> list[PredictionRecord]:
    """JSONL predictions; unlike gold JSONL, an entity may lack offsets and may carry a probability."""
    records = []
    for index, (number, line) in enumerate((n, raw) for n, raw in enumerate(text.split("\n"), 1) if raw.strip()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name}:{number}: not JSON: {error}") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f"{name}:{number}: expected an object with a 'text' string")
        doc_text = row["text"]
        mentions = []
        for entity in row.get("entities", []):
            label, start, end = entity.get("label"), entity.get("start"), entity.get("end")
            probability = None if entity.get("probability") is None else float(entity["probability"])
            if isinstance(start, int) and isinstance(end, int):
                if not 0 <= start < end <= len(doc_text):
                    raise ValueError(f"{name}:{number}: entity {entity} has offsets outside the text")
                mentions.append(ScoredMention(label, doc_text[start:end], probability, start, end))
            elif isinstance(entity.get("text"), str):
                mentions.append(ScoredMention(label, entity["text"], probability))
            else:
                raise ValueError(f"{name}:{number}: entity {entity} needs offsets or a 'text'")
        records.append(
            PredictionRecord(
                id=str(row.get("id", f"{name}-{index}")),
                text=doc_text,
                mentions=mentions,
                language=row.get("language") or guess_language(doc_text),
            )
        )
    return records
