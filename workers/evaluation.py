"""Predicting a corpus with the embedded engine and scoring it; the side-by-side decoding benchmark.

`evaluate` runs one decoding mode over documents and returns predictions, scores and latency figures;
`benchmark` runs several modes on the same documents in one process, one after another, and reports them
side by side (the paper's Tables 2, 3 and 8) as JSON, a table and a PNG plot.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from padellm_ner.core import Document, DocumentPrediction, LabelSchema, Scores, set_scores, span_scores
from padellm_ner.core.plan import merge_windows
from padellm_ner.core.segment import Window

PADELLM_PREFIX, PADELLM_NO_PREFIX, AUTOREG_STRUCT = "padellm", "padellm-no-prefix-sharing", "autoreg-struct"
PADELLM_BY_SENTENCE = "padellm-sentence-by-sentence"  # a document's corpus sentences, one after another
FLOOR = "floor"  # the latency floor of each document on the model (workers/engine/floor.py)


class Recognition(Protocol):
    """What a mode returns for a document: the engines' results and `Measured` all have these."""

    @property
    def prediction(self) -> DocumentPrediction: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def tokens_per_sequence(self) -> float: ...
    @property
    def forward_calls(self) -> int: ...
    @property
    def drafted_tokens(self) -> int: ...
    @property
    def accepted_tokens(self) -> int: ...


Recognizer = Callable[[Document], Recognition]


@dataclass
class Measured:
    """A recognition put together by a recognizer of this module: the sentences of a document read one after
    another (their latencies summed), or a document's floor (with the prediction of the engine it times)."""

    prediction: DocumentPrediction
    latency_s: float
    tokens_per_sequence: float
    forward_calls: int
    drafted_tokens: int = 0
    accepted_tokens: int = 0


def sentence_by_sentence(recognize: Callable[[str], Recognition], labels) -> Recognizer:
    """A recognizer that reads each of a document's sentences (`Document.sentences`) alone with `recognize` and
    merges them as windows of the document."""

    def run(document: Document) -> Measured:
        spans = document.sentences or ((0, len(document.text)),)
        results = [recognize(document.text[s:e]) for s, e in spans]
        windows = [Window(i, document.text[s:e], tuple(range(s, e))) for i, (s, e) in enumerate(spans)]
        prediction = merge_windows(document.text, labels, windows, [r.prediction for r in results])
        return Measured(
            prediction,
            sum(r.latency_s for r in results),
            sum(r.tokens_per_sequence for r in results) / len(results),
            sum(r.forward_calls for r in results),
            sum(r.drafted_tokens for r in results),
            sum(r.accepted_tokens for r in results),
        )

    return run


def floor_of(engine, schema: LabelSchema) -> Recognizer:
    """A recognizer whose latency is the document's floor: `engine` (a PadellmEngine) decodes it, untimed, and
    its longest chain (a count and its longest mention) is decoded alone by the same decoder, timed, at batch 1."""
    from workers.engine.floor import latency_floor_s

    def run(document: Document) -> Measured:
        result = engine.recognize(document.text, schema)
        windows = [w.text for w in engine.plan(document.text, schema).windows]
        floor = latency_floor_s(engine, windows, schema, result.counts, result.mentions)
        return Measured(result.prediction, floor, result.tokens_per_sequence, 1)

    return run


def differing_documents(runs: dict[str, ModeRun], reference: str) -> dict[str, int]:
    """Per mode, how many documents it predicted differently from `reference` (another precision, say)."""

    def entities(prediction: DocumentPrediction) -> set:
        return {(m.label, m.text, m.start, m.end) for m in prediction.mentions}  # probabilities aside

    ref = runs[reference].predictions
    return {
        name: sum(entities(a) != entities(b) for a, b in zip(run.predictions, ref))
        for name, run in runs.items()
        if name != reference
    }


@dataclass
class ModeRun:
    mode: str
    latencies_s: list[float] = field(default_factory=list)
    tokens_per_sequence: list[float] = field(default_factory=list)
    forward_calls: list[int] = field(default_factory=list)
    drafted_tokens: list[int] = field(default_factory=list)  # prompt lookup, per document
    accepted_tokens: list[int] = field(default_factory=list)
    predictions: list = field(default_factory=list)  # DocumentPrediction per document
    windows: list[int] = field(default_factory=list)  # windows each document was read as
    characters: list[int] = field(default_factory=list)  # length of each document
    set_scores: Scores | None = None
    span_scores: Scores | None = None
    count_exact: int = 0
    count_total: int = 0

    def summary(self) -> dict:
        lat = sorted(self.latencies_s)

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))] * 1000 if lat else 0.0

        out = {
            "documents": len(lat),
            "latency_ms_mean": statistics.fmean(lat) * 1000 if lat else 0.0,
            "latency_ms_p50": pct(0.5),
            "latency_ms_p95": pct(0.95),
            "tokens_per_sequence_mean": statistics.fmean(self.tokens_per_sequence) if self.tokens_per_sequence else 0.0,
            "forward_calls_mean": statistics.fmean(self.forward_calls) if self.forward_calls else 0.0,
            "drafted_tokens_mean": statistics.fmean(self.drafted_tokens) if self.drafted_tokens else 0.0,
            "accepted_tokens_mean": statistics.fmean(self.accepted_tokens) if self.accepted_tokens else 0.0,
            "windows_mean": statistics.fmean(self.windows) if self.windows else 0.0,
            "characters_mean": statistics.fmean(self.characters) if self.characters else 0.0,
        }
        if self.set_scores is not None:
            s = self.set_scores.to_json()
            out.update(
                {
                    "micro_f1": s["micro_f1"],
                    "macro_f1": s["macro_f1"],
                    "precision": s["precision"],
                    "recall": s["recall"],
                    "per_label": s["per_label"],
                    "by_gold_group_size": s.get("by_gold_group_size", {}),
                }
            )
        if self.span_scores is not None:
            out["span_micro_f1"] = self.span_scores.micro_f1
        if self.count_total:
            out["count_accuracy"] = self.count_exact / self.count_total
        return out


def run_mode(
    mode: str,
    recognize: Recognizer,
    documents: Sequence[Document],
    schema: LabelSchema,
    warmup: int = 2,
    progress: bool = True,
) -> ModeRun:
    """Decode every document with `recognize` and score the predictions."""
    return run_modes({mode: recognize}, documents, schema, warmup, progress)[mode]


def run_modes(
    recognizers: dict[str, Recognizer],
    documents: Sequence[Document],
    schema: LabelSchema,
    warmup: int = 2,
    progress: bool = True,
) -> dict[str, ModeRun]:
    """Every mode on every document, interleaved: document i goes through all modes back to back, in an order
    that rotates from one document to the next, so a drift of the machine's speed during the run (other
    load, frequency) falls on all modes alike instead of on whichever ran last."""
    names = list(recognizers)
    for document in documents[:warmup]:  # first calls pay one-off allocation costs; not measured
        for name in names:
            recognizers[name](document)
    runs = {name: ModeRun(name) for name in names}
    for i, document in enumerate(tqdm(documents, desc=" / ".join(names), unit="doc", disable=not progress)):
        gold_counts = {label: 0 for label in schema.labels}
        for entity in document.entities:
            gold_counts[entity.label] = gold_counts.get(entity.label, 0) + 1
        for name in names[i % len(names) :] + names[: i % len(names)]:
            result, run = recognizers[name](document), runs[name]
            run.latencies_s.append(result.latency_s)
            run.tokens_per_sequence.append(result.tokens_per_sequence)
            run.forward_calls.append(result.forward_calls)
            run.drafted_tokens.append(result.drafted_tokens)
            run.accepted_tokens.append(result.accepted_tokens)
            run.predictions.append(result.prediction)
            run.windows.append(result.prediction.windows)
            run.characters.append(len(document.text))
            for count in result.prediction.counts:
                run.count_total += 1
                run.count_exact += int(count.count == gold_counts.get(count.label, 0))
    for run in runs.values():
        run.set_scores = set_scores((p.by_label(), d.mentions_by_label()) for p, d in zip(run.predictions, documents))
        run.span_scores = span_scores(
            ([(m.start, m.end, m.label) for m in p.mentions], [(e.start, e.end, e.label) for e in d.entities])
            for p, d in zip(run.predictions, documents)
        )
    return runs


def predictions_jsonl(run: ModeRun, documents: Sequence[Document]) -> str:
    """One JSON line per document. A mention without a probability (AutoReg_Struct's) is written without one,
    so that `padellm-ner score` leaves it out of de-duplication, as `eval` does."""
    lines = []
    for prediction, document, latency in zip(run.predictions, documents, run.latencies_s):
        lines.append(
            json.dumps(
                {
                    "id": document.id,
                    "text": document.text,
                    "latency_s": latency,
                    "entities": [
                        {
                            "label": m.label,
                            "text": m.text,
                            "start": m.start,
                            "end": m.end,
                            **({} if m.probability is None else {"probability": m.probability}),
                        }
                        for m in prediction.mentions
                    ],
                },
                ensure_ascii=False,
            )
        )
    return "\n".join(lines) + "\n"


def speedups(summaries: dict[str, dict]) -> dict:
    out: dict[str, float] = {}
    floor = summaries.get(FLOOR, {}).get("latency_ms_mean")
    if floor:
        for name, summary in summaries.items():
            if name != FLOOR:
                out[f"{name}_vs_floor"] = summary["latency_ms_mean"] / floor
    base = summaries.get(PADELLM_PREFIX)
    if not base:
        return out
    for other in (AUTOREG_STRUCT, PADELLM_NO_PREFIX, PADELLM_BY_SENTENCE):
        if other in summaries and base["latency_ms_mean"]:
            key = f"{PADELLM_PREFIX}_vs_{other}"
            out[key] = summaries[other]["latency_ms_mean"] / base["latency_ms_mean"]
    if AUTOREG_STRUCT in summaries and summaries[AUTOREG_STRUCT]["tokens_per_sequence_mean"]:
        out["tokens_per_sequence_ratio_padellm_over_autoreg"] = (
            base["tokens_per_sequence_mean"] / summaries[AUTOREG_STRUCT]["tokens_per_sequence_mean"]
        )
    return out


def bench_table(report: dict) -> str:
    modes = report["modes"]
    width = max(len(m) for m in modes)
    lines = [
        f"{'mode':<{width}}  {'dtype':>8} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'speedup':>8} {'x floor':>8} "
        f"{'F1':>7} {'span F1':>8} {'tok/seq':>8} {'fwd/doc':>8} {'win/doc':>8}"
    ]
    base = modes.get(PADELLM_PREFIX, {}).get("latency_ms_mean")
    floor = modes.get(FLOOR, {}).get("latency_ms_mean")
    for name, m in modes.items():
        # speedup of PaDeLLM (prefix sharing) over this mode: this mode's mean latency / PaDeLLM's
        speed = m["latency_ms_mean"] / base if base else float("nan")
        over_floor = m["latency_ms_mean"] / floor if floor else float("nan")
        lines.append(
            f"{name:<{width}}  {m.get('precision', ''):>8} {m['latency_ms_mean']:9.1f} {m['latency_ms_p50']:9.1f} "
            f"{m['latency_ms_p95']:9.1f} {speed:8.2f} {over_floor:8.2f} {m.get('micro_f1', float('nan')) * 100:7.2f} "
            f"{m.get('span_micro_f1', float('nan')) * 100:8.2f} {m['tokens_per_sequence_mean']:8.2f} "
            f"{m['forward_calls_mean']:8.1f} {m.get('windows_mean', 1.0):8.1f}"
        )
    lines.append("speedup column: this mode's mean latency / PaDeLLM (prefix sharing) mean latency")
    aliases = [f"{name} is the {m['same_run_as']} run" for name, m in modes.items() if "same_run_as" in m]
    if aliases:
        lines.append("; ".join(aliases) + " (the precision --dtype resolved to on this machine)")
    if floor:
        lines.append(
            "x floor column: this mode's mean latency / the floor's (each document's longest chain, a count and its "
            "longest mention, decoded alone by the same decoder at batch 1 on the same model)"
        )
    for key, value in report.items():
        if key.startswith("documents_differing_from_"):
            differing = ", ".join(f"{name} {n}" for name, n in value.items())
            reference = key.removeprefix("documents_differing_from_")
            lines.append(f"documents whose entities differ from {reference}'s ({report.get('dtype')}): {differing}")
    if report.get("lookup_tokens"):
        kept = ", ".join(
            f"{name} {m.get('drafted_tokens_mean', 0):.1f} / {m.get('accepted_tokens_mean', 0):.1f}"
            for name, m in modes.items()
        )
        lines.append(
            f"prompt lookup: drafts of up to {report['lookup_tokens']} tokens; drafted / kept per document: {kept}"
        )
    for key, value in report.get("speedup", {}).items():
        lines.append(f"{key}: {value:.2f}")
    return "\n".join(lines)


def bench_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [name for name, m in report["modes"].items() if "same_run_as" not in m]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    x = range(len(modes))
    for offset, key, label in (
        (-0.25, "latency_ms_mean", "mean"),
        (0, "latency_ms_p50", "p50"),
        (0.25, "latency_ms_p95", "p95"),
    ):
        axes[0].bar([i + offset for i in x], [report["modes"][m][key] for m in modes], width=0.25, label=label)
    axes[0].set_title("latency per document (ms)")
    axes[0].legend()
    axes[1].bar(x, [report["modes"][m]["tokens_per_sequence_mean"] for m in modes], color="tab:green")
    axes[1].set_title("generated tokens per sequence")
    f1 = [report["modes"][m].get("micro_f1", 0) * 100 for m in modes]
    axes[2].bar(x, f1, color="tab:purple")
    axes[2].set_ylim(min(f1 + [100]) - 10, 100)  # the differences, not the distance from zero, are the point
    axes[2].set_title("micro-F1 (paper metric)")
    for ax, values, digits in (
        (axes[0], [report["modes"][m]["latency_ms_mean"] for m in modes], 0),
        (axes[1], [report["modes"][m]["tokens_per_sequence_mean"] for m in modes], 2),
        (axes[2], f1, 2),
    ):
        for i, value in enumerate(values):
            ax.annotate(
                f"{value:.{digits}f}", (i - (0.25 if ax is axes[0] else 0), value), ha="center", va="bottom", fontsize=8
            )
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(modes, rotation=15, fontsize=8)
    chosen = report.get("documents_selected") or {}
    how = (
        f"a random sample of {chosen['size']} of {chosen['of']} documents (seed {chosen['seed']})"
        if chosen.get("how") == "sample"
        else f"{report['documents']} documents"
    )
    lookup = f", prompt lookup {report['lookup_tokens']}" if report.get("lookup_tokens") else ", no prompt lookup"
    fig.suptitle(f"{report['data']} — {how}, {report['device']}{lookup}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
