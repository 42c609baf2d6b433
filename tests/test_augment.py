"""Mention replacement: copies of training documents with their mentions swapped for others of the same label."""

import json
import random

import pytest
from conftest import EXAMPLES

from padellm_ner.core import Document, get_schema, reformulate
from padellm_ner.core.document import make_entity
from padellm_ner.data import read_corpus
from workers.training.augment import MentionReplacement, augmented_documents, mention_inventory, replace_mentions


def _doc(text: str, spans: list[tuple[str, str]], doc_id: str = "d") -> Document:
    """A document from (label, string) pairs found left to right in the text."""
    entities, cursor = [], 0
    for label, string in spans:
        start = text.index(string, cursor)
        entities.append(make_entity(text, start, start + len(string), label))
        cursor = start + len(string)
    return Document(id=doc_id, text=text, entities=tuple(entities))


INVENTORY = {"PER": ["Ann Lee", "Bo", "Cy Young"], "LOC": ["Paris", "Rome", "Oslo"], "ORG": ["UN"]}


def test_a_copy_keeps_labels_counts_and_order_with_new_strings():
    doc = _doc("Smith met Jones in Berlin .", [("PER", "Smith"), ("PER", "Jones"), ("LOC", "Berlin")])
    copy = replace_mentions(doc, INVENTORY, random.Random(0), "#mr1")
    assert copy.id == "d#mr1"
    assert [e.label for e in copy.entities] == ["PER", "PER", "LOC"]
    assert all(copy.text[e.start : e.end] == e.text for e in copy.entities)  # offsets agree with the new text
    assert [e.text for e in copy.entities[:2]] != ["Smith", "Jones"]
    assert {e.text for e in copy.entities} <= {s for strings in INVENTORY.values() for s in strings}
    assert copy.text.endswith(" in " + copy.entities[2].text + " .") and " met " in copy.text
    schema = get_schema("conll03")
    counts = lambda d: [(x.label, x.count) for x in reformulate(d, schema)]  # noqa: E731
    assert counts(copy) == counts(doc)


def test_a_repeated_string_gets_one_replacement_and_distinct_ones_stay_distinct():
    doc = _doc("Rome beat Milan , Rome said .", [("LOC", "Rome"), ("LOC", "Milan"), ("LOC", "Rome")])
    for seed in range(20):
        copy = replace_mentions(doc, INVENTORY, random.Random(seed), "#mr1")
        first, second, third = (e.text for e in copy.entities)
        assert first == third and first != second


def test_a_replacement_is_never_a_string_the_sentence_holds_elsewhere():
    doc = _doc("Paris fans cheered Bo in Rome .", [("PER", "Bo"), ("LOC", "Rome")])
    for seed in range(50):
        copy = replace_mentions(doc, {"PER": ["Bo", "Paris"], "LOC": ["Paris", "Oslo"]}, random.Random(seed), "#")
        assert copy.entities[1].text == "Oslo"  # "Paris" occurs outside the mentions, so it is never drawn
        assert copy.text.count("Paris") == 1


def test_documents_without_mentions_or_with_overlapping_ones_are_copied_unchanged():
    plain = Document(id="p", text="Nothing here .")
    nested = Document(
        id="n",
        text="Bank of Rome",
        entities=(make_entity("Bank of Rome", 0, 12, "ORG"), make_entity("Bank of Rome", 8, 12, "LOC")),
    )
    for doc in (plain, nested):
        copy = replace_mentions(doc, INVENTORY, random.Random(0), "#mr1")
        assert (copy.text, copy.entities, copy.id) == (doc.text, doc.entities, doc.id + "#mr1")


def test_copies_are_deterministic_per_seed_and_cover_the_corpus_copy_by_copy():
    docs = read_corpus(EXAMPLES / "sample.conll").documents
    first = augmented_documents(docs, MentionReplacement(copies=2, seed=3))
    again = augmented_documents(docs, MentionReplacement(copies=2, seed=3))
    other = augmented_documents(docs, MentionReplacement(copies=2, seed=4))
    assert first == again and first != other
    assert [d.id for d in first] == [d.id + "#mr1" for d in docs] + [d.id + "#mr2" for d in docs]
    inventory = mention_inventory(docs)
    assert all(e.text in inventory[e.label] for d in first for e in d.entities)
    assert augmented_documents(docs, MentionReplacement()) == []
    with pytest.raises(ValueError, match="copies >= 0"):
        MentionReplacement(copies=-1)


def test_training_with_mention_replacement_reads_the_copies_and_records_them(tiny_base_model, tmp_path):
    from test_training import _config
    from transformers import AutoTokenizer

    from workers.training.export import export_run
    from workers.training.loop import train

    docs = read_corpus(EXAMPLES / "sample.conll").documents
    logged = []
    config = _config(tiny_base_model, tmp_path / "run", max_steps=1, mention_replacement_copies=1)
    train(config, docs, get_schema("conll03"), AutoTokenizer.from_pretrained(tiny_base_model), log=logged.append)
    assert (
        f"mention replacement: 1 x the corpus added, its mentions swapped for others of their label "
        f"({len(docs)} -> {2 * len(docs)} documents)"
    ) in logged
    export_run(tmp_path / "run", tmp_path / "model", rank=4, version="test", form="lowrank-int8")
    training = json.loads((tmp_path / "model" / "padellm.json").read_text())["training"]
    assert training["mention_replacement_copies"] == 1
