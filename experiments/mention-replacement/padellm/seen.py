"""Recall and precision of predicted (label, string) pairs, split by whether the string is a training mention.

    python seen.py PREDICTIONS.jsonl GOLD [--train TRAIN] [--json OUT]

PREDICTIONS is what `padellm-ner eval --predictions` writes; GOLD and TRAIN are any corpus the readers take.
A gold or predicted pair is "seen" where TRAIN has the string as a mention of that label, "other label" where
TRAIN has it only under other labels, "unseen" otherwise. Pairs are counted as the paper's metric counts them:
one per (document, label, string).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from padellm_ner.data import read_corpus

KINDS = ("seen", "other label", "unseen")
DEFAULT_TRAIN = Path(__file__).resolve().parents[4] / "../shared/datasets/conll2003/original/train.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions")
    parser.add_argument("gold")
    parser.add_argument("--train", default=str(DEFAULT_TRAIN))
    parser.add_argument("--json", help="write the counts here as JSON")
    args = parser.parse_args()

    train = read_corpus(args.train).documents
    seen = {(e.label, e.text) for d in train for e in d.entities}
    seen_strings = {e.text for d in train for e in d.entities}

    def kind(pair: tuple[str, str]) -> str:
        return "seen" if pair in seen else "other label" if pair[1] in seen_strings else "unseen"

    predicted = {}
    for line in Path(args.predictions).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        predicted[record["id"]] = {(e["label"], e["text"]) for e in record["entities"]}
    counts: dict[str, dict[str, dict[str, int]]] = {}  # label (or "all") -> kind -> tp / fn / fp
    for document in read_corpus(args.gold).documents:
        gold = {(e.label, e.text) for e in document.entities}
        found = predicted[document.id]
        for pair, outcome in [(p, "tp" if p in found else "fn") for p in gold] + [(p, "fp") for p in found - gold]:
            for label in ("all", pair[0]):
                cell = counts.setdefault(label, {k: {"tp": 0, "fn": 0, "fp": 0} for k in KINDS})[kind(pair)]
                cell[outcome] += 1

    report = {}
    print(f"{'label':6s} {'kind':12s} {'gold':>6s} {'recall':>7s} {'false+':>7s} {'precision':>9s}")
    for label, by_kind in counts.items():
        for name, c in by_kind.items():
            gold, recall = c["tp"] + c["fn"], 100 * c["tp"] / max(1, c["tp"] + c["fn"])
            precision = 100 * c["tp"] / max(1, c["tp"] + c["fp"])
            report.setdefault(label, {})[name] = {**c, "gold": gold, "recall": recall, "precision": precision}
            print(f"{label:6s} {name:12s} {gold:6d} {recall:7.2f} {c['fp']:7d} {precision:9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
