"""Window budget: F1 and latency of whole CoNLL-2003 articles read as windows, against their own sentences.

Every article is one text, its sentences joined by a line break (`--join newline`, as `--unit document` joins
them) or by one space (`--join space`: no line breaks to lean on). Each window policy runs the shipped model's
engine on the whole article (its windows decoded in one batch); the reference runs the corpus's own sentences
one after another and unites the mentions per article. Scored at document level with the paper's set metric.

    .venv/bin/python experiments/document-windows/budget.py ../shared/datasets/conll2003/original/test.txt \
        --sample 30 --seed 1 --join newline --output experiments/document-windows/budget-newline.json
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import groupby

import torch
from tqdm import tqdm

from padellm_ner.core import get_schema, set_scores
from padellm_ner.core.segment import WindowPolicy, WindowUnit
from padellm_ner.data.formats import read_corpus
from padellm_ner.data.selection import select_documents
from workers.engine.loading import load_engine_model
from workers.engine.padellm import PadellmEngine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--sample", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--budgets", default="64,96,128")
    parser.add_argument("--join", default="newline", choices=("newline", "space"))
    parser.add_argument("--units", default="packed", help="comma-separated window units to try")
    parser.add_argument("--output")
    args = parser.parse_args()
    torch.set_num_threads(2)
    schema = get_schema("conll03")
    articles = []
    for _, group in groupby(read_corpus(args.data).documents, key=lambda d: d.source_document):
        sentences = list(group)
        gold: dict[str, set[str]] = {}
        for sentence in sentences:
            for label, mentions in sentence.mentions_by_label().items():
                gold.setdefault(label, set()).update(mentions)
        joiner = "\n" if args.join == "newline" else " "
        articles.append((joiner.join(s.text for s in sentences), [s.text for s in sentences], gold))
    articles = select_documents(articles, sample=args.sample, seed=args.seed)
    model = load_engine_model(dtype=args.dtype)
    policies = {"sentences of the corpus": None}
    for budget in [int(b) for b in args.budgets.split(",")]:
        for unit in args.units.split(","):
            policies[f"{unit} <= {budget}"] = WindowPolicy(budget, WindowUnit(unit))
    sentence_engine = PadellmEngine(model, window_policy=WindowPolicy(4096))
    report = {}
    for name, policy in policies.items():
        predicted, windows, seconds = [], 0, 0.0
        for text, sentences, _ in tqdm(articles, desc=name, unit="article"):
            found: dict[str, list[str]] = {}
            started = time.perf_counter()
            if policy is None:  # each sentence alone, one after another
                for sentence in sentences:
                    for label, mentions in sentence_engine.recognize(sentence, schema).prediction.by_label().items():
                        found.setdefault(label, []).extend(mentions)
                windows += len(sentences)
            else:
                prediction = PadellmEngine(model, window_policy=policy).recognize(text, schema).prediction
                found = prediction.by_label()
                windows += prediction.windows
            seconds += time.perf_counter() - started
            predicted.append(found)
        scores = set_scores((p, {k: list(v) for k, v in g.items()}) for p, (_, _, g) in zip(predicted, articles))
        report[name] = {
            "micro_f1": scores.micro_f1,
            "precision": scores.total.precision,
            "recall": scores.total.recall,
            "windows_per_article": windows / len(articles),
            "ms_per_article": seconds / len(articles) * 1000,
        }
        r = report[name]
        print(
            f"{name:<28} F1 {r['micro_f1'] * 100:6.2f}  P {r['precision'] * 100:6.2f}  R {r['recall'] * 100:6.2f}  "
            f"windows {r['windows_per_article']:5.1f}  {r['ms_per_article']:7.0f} ms",
            flush=True,
        )
    if args.output:
        with open(args.output, "w") as out:
            json.dump(
                {
                    "data": args.data,
                    "sample": args.sample,
                    "seed": args.seed,
                    "dtype": args.dtype,
                    "join": args.join,
                    "articles": len(articles),
                    "policies": report,
                },
                out,
                indent=2,
            )


if __name__ == "__main__":
    main()
