"""Sentence segmenters on whole CoNLL-2003 articles: boundaries against the corpus's own sentences.

Each `-DOCSTART-` group becomes one text, its sentences joined by one space (no line breaks to lean on), and
each segmenter's sentence starts are compared with the corpus's sentence starts. Also counted: boundaries
that fall inside a gold entity (a window cut there loses the entity), and time per article.

    .venv/bin/python experiments/sentence-segmenters/compare.py ../shared/datasets/conll2003/original/test.txt
"""

from __future__ import annotations

import json
import sys
import time
from itertools import groupby

from padellm_ner.data.formats import read_corpus


def articles(path: str) -> list[tuple[str, list[int], list[tuple[int, int]]]]:
    """(text, gold sentence starts after the first, gold entity spans) per article."""
    corpus = read_corpus(path)
    out = []
    for _, group in groupby(corpus.documents, key=lambda d: d.source_document):
        text, starts, spans = "", [], []
        for sentence in group:
            if text:
                text += " "
                starts.append(len(text))
            spans += [(len(text) + e.start, len(text) + e.end) for e in sentence.entities]
            text += sentence.text
        out.append((text, starts, spans))
    return out


def sentencex_starts(text: str) -> list[int]:
    import sentencex

    return [b["start_index"] for b in sentencex.get_sentence_boundaries("en", text)][1:]


def pysbd_starts(text: str) -> list[int]:
    import pysbd

    segmenter = pysbd_starts.__dict__.setdefault("s", pysbd.Segmenter(language="en", clean=False, char_span=True))
    return [span.start for span in segmenter.segment(text)][1:]


def syntok_starts(text: str) -> list[int]:
    import syntok.segmenter as segmenter

    return [sentence[0].offset for paragraph in segmenter.analyze(text) for sentence in paragraph][1:]


def main(path: str) -> None:
    data = articles(path)
    report = {}
    for name, split in (("sentencex", sentencex_starts), ("pysbd", pysbd_starts), ("syntok", syntok_starts)):
        tp = fp = fn = inside = 0
        started = time.perf_counter()
        for text, gold, spans in data:
            predicted = set()
            for start in split(text):
                while start < len(text) and text[start].isspace():
                    start += 1
                predicted.add(start)
            predicted.discard(0)
            tp += len(predicted & set(gold))
            fp += len(predicted - set(gold))
            fn += len(set(gold) - predicted)
            inside += sum(1 for p in predicted for s, e in spans if s < p < e)
        seconds = time.perf_counter() - started
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        report[name] = {
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall),
            "cuts_inside_entities": inside,
            "ms_per_article": seconds / len(data) * 1000,
        }
    long_text = " ".join(text for text, _, _ in data)[:100_000]  # one 100,000-character document
    for name, split in (("sentencex", sentencex_starts), ("pysbd", pysbd_starts), ("syntok", syntok_starts)):
        started = time.perf_counter()
        split(long_text)
        report[name]["ms_per_100k_characters"] = (time.perf_counter() - started) * 1000
    print(json.dumps({"articles": len(data), "segmenters": report}, indent=2))
    print(
        f"\n{'segmenter':<10} {'P':>6} {'R':>6} {'F1':>6} {'cuts in entities':>17} {'ms/article':>11} "
        f"{'ms/100k chars':>14}"
    )
    for name, r in report.items():
        print(
            f"{name:<10} {r['precision'] * 100:6.1f} {r['recall'] * 100:6.1f} {r['f1'] * 100:6.1f} "
            f"{r['cuts_inside_entities']:>17} {r['ms_per_article']:11.2f} {r['ms_per_100k_characters']:14.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
