"""Corpus statistics: documents, sentences, mentions per label."""

from __future__ import annotations

from collections import Counter

from .formats import Corpus


def corpus_stats(corpus: Corpus) -> dict:
    per_label = Counter(e.label for d in corpus.documents for e in d.entities)
    sources = {d.source_document for d in corpus.documents if d.source_document is not None}
    nested = sum(1 for d in corpus.documents for a, b in zip(d.entities, d.entities[1:]) if b.start < a.end)
    return {
        "path": corpus.path,
        "format": corpus.format,
        **corpus.details,
        "documents": len(sources) if sources else None,
        "sentences": len(corpus.documents),
        "characters": sum(len(d.text) for d in corpus.documents),
        "mentions": sum(per_label.values()),
        "overlapping_pairs": nested,
        "per_label": dict(sorted(per_label.items())),
    }


def stats_table(stats: dict) -> str:
    lines = [
        f"file        {stats['path']}",
        f"format      {stats['format']}"
        + "".join(f", {k}={stats[k]}" for k in ("mode", "scheme", "offsets", "end") if k in stats),
        f"documents   {stats['documents'] if stats['documents'] is not None else '-'}",
        f"sentences   {stats['sentences']:,}",
        f"characters  {stats['characters']:,}",
        f"mentions    {stats['mentions']:,}",
    ]
    width = max([5, *(len(label) for label in stats["per_label"])])
    lines.append("")
    lines.append(f"{'label':<{width}}  {'mentions':>9}")
    for label, count in stats["per_label"].items():
        lines.append(f"{label:<{width}}  {count:>9,}")
    return "\n".join(lines)
