"""Scores predictions with the hedged mentions added, over thresholds (see README.md).

    .venv/bin/python sweep.py OUT_DIR/preds.jsonl OUT_DIR/cands.json GOLD

tau: least P(count = n+1); pi: least probability of the hedged mention. A hedged mention joins the label's
predictions if it is new for that label and found in the text; keep-max de-duplication across labels as usual."""

import json
import sys

from padellm_ner.core.grounding import ground
from padellm_ner.core.scoring import PredictionRecord, ScoredMention, score_records
from padellm_ner.data.formats import read_corpus, read_predictions

preds, cands, gold_path = sys.argv[1:4]
_, records = read_predictions(preds)
gold = read_corpus(gold_path).documents
rows = [r for r in json.load(open(cands)) if "mention" in r]
by_id = {}
for r in rows:
    by_id.setdefault(r["id"], []).append(r)


def score(tau, pi):
    out, added = [], 0
    for rec in records:
        mentions = list(rec.mentions)
        have = {(m.label, m.text) for m in mentions}
        for c in by_id.get(rec.id, []):
            text = c["mention"].strip()
            if c["p_next"] < tau or c["prob"] < pi or not text or (c["label"], text) in have:
                continue
            if ground(rec.text, [(c["label"], text)], "en")[0] is None:
                continue
            mentions.append(ScoredMention(c["label"], text, c["prob"]))
            added += 1
            have.add((c["label"], text))
        out.append(PredictionRecord(rec.id, rec.text, mentions, rec.gold, rec.labels, rec.latency_s))
    s = score_records(out, gold)
    return s.micro_f1, added


base = score(2.0, 2.0)
print("base", base)
for tau in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4):
    cells = [(pi, *score(tau, pi)) for pi in (0.0, 0.5, 0.8, 0.9)]
    print(tau, [(pi, round(f1 * 100, 2), added) for pi, f1, added in cells])
