"""The project's own JSON-lines format, one document per line:

    {"id": "s1", "text": "EU rejects German call", "language": "en",
     "entities": [{"start": 0, "end": 2, "label": "ORG"}, {"start": 11, "end": 17, "label": "MISC"}]}

`start`/`end` are character offsets (Unicode code points), `end` exclusive. `id` is optional (defaults to the
line's index), `language` is optional ("en" or "zh"; guessed from the text when absent), an entity may carry
its `text`, which must then agree with the offsets. Predictions may add `"probability"` to an entity and may
give only `text` without offsets (a mention that could not be placed); see `read_prediction_jsonl`.
"""

from __future__ import annotations

import json

from ..core.document import Document, Entity, make_entity
from ..core.schemas import CHINESE, ENGLISH, LANGUAGES


def guess_language(text: str) -> str:
    return CHINESE if any("\u4e00" <= ch <= "\u9fff" for ch in text) else ENGLISH


def _load(line: str, number: int, name: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}:{number}: not JSON: {error}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{name}:{number}: expected a JSON object")
    if not isinstance(row.get("text"), str):
        raise ValueError(f"{name}:{number}: field 'text' (a string) is required")
    entities = row.get("entities", [])
    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise ValueError(f"{name}:{number}: field 'entities' must be a list of objects")
    language = row.get("language")
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"{name}:{number}: unknown language {language!r}; expected one of {LANGUAGES}")
    return row


def _entity(row: dict, entity: dict, number: int, name: str) -> Entity:
    text = row["text"]
    start, end, label = entity.get("start"), entity.get("end"), entity.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError(f"{name}:{number}: entity {entity} needs a 'label'")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
        raise ValueError(f"{name}:{number}: entity {entity} needs integer offsets 0 <= start < end <= {len(text)}")
    made = make_entity(text, start, end, label)
    if "text" in entity and entity["text"] != made.text:
        raise ValueError(
            f"{name}:{number}: entity text {entity['text']!r} differs from the text at its offsets {made.text!r}"
        )
    return made


def read_jsonl(text: str, name: str = "doc") -> tuple[list[Document], dict]:
    documents = []
    for index, (number, line) in enumerate((n, raw) for n, raw in enumerate(text.split("\n"), 1) if raw.strip()):
        row = _load(line, number, name)
        entities = tuple(_entity(row, e, number, name) for e in row.get("entities", []))
        documents.append(
            Document(
                id=str(row.get("id", f"{name}-{index}")),
                text=row["text"],
                entities=entities,
                language=row.get("language") or guess_language(row["text"]),
                source_document=row.get("source_document"),
            )
        )
    return documents, {}


def document_to_json(document: Document) -> dict:
    row = {
        "id": document.id,
        "text": document.text,
        "language": document.language,
        "entities": [{"start": e.start, "end": e.end, "label": e.label, "text": e.text} for e in document.entities],
    }
    if document.source_document is not None:
        row["source_document"] = document.source_document
    return row


def write_jsonl(documents: list[Document]) -> str:
    return "".join(json.dumps(document_to_json(d), ensure_ascii=False) + "\n" for d in documents)
