"""Step 3 of 3. `python score.py PASS.jsonl GOLD > report.json`: score a recorded pass with and without the
re-decoded absent mentions (`repairs`): whole dev, the seeded sample of 800 (seed 3) and the other 2,450; the
paired bootstrap of the difference; the list of re-decodes. JSON on stdout."""

import json
import sys
from pathlib import Path

from padellm_ner.core import CountResult, MentionResult, aggregate, get_schema, set_scores
from padellm_ner.core.bootstrap import paired_comparison
from padellm_ner.data import read_corpus
from padellm_ner.data.selection import select_documents

PASS, GOLD = sys.argv[1], sys.argv[2]
documents = read_corpus(GOLD).documents
gold = {d.id: d for d in documents}
sample800 = {d.id for d in select_documents(documents, sample=800, seed=3)}
labels = list(get_schema("conll03").labels)
parts = {"whole dev": [], "sample 800 (seed 3)": [], "other 2,450": []}
redecodes = []
for line in open(PASS):
    r = json.loads(line)
    counts = [CountResult(*c) for c in r["counts"]]
    mentions = [MentionResult(*x) for x in r["mentions"]]
    again = {(a[0], a[1]): a for a in r["repairs"]}
    repaired = [
        MentionResult(x.label, x.k, again[x.label, x.k][3], again[x.label, x.k][4], x.generated_tokens)
        if (x.label, x.k) in again
        else x
        for x in mentions
    ]
    g = gold[r["id"]].mentions_by_label()
    pair = (
        aggregate(r["text"], labels, counts, mentions, language="en").by_label(),
        aggregate(r["text"], labels, counts, repaired, language="en").by_label(),
        g,
    )
    parts["whole dev"].append(pair)
    parts["sample 800 (seed 3)" if r["id"] in sample800 else "other 2,450"].append(pair)
    for label, k, before, after, _logprob, _, _ in r["repairs"]:
        redecodes.append(
            {
                "id": r["id"],
                "label": label,
                "k": k,
                "greedy": before,
                "grounded": after.strip(),
                "grounded_is_gold": after.strip() in g.get(label, []),
                "gold": g.get(label, []),
            }
        )
report = {
    "pass": Path(PASS).name,
    "redecoded": len(redecodes),
    "grounded_gold": sum(x["grounded_is_gold"] for x in redecodes),
    "parts": {},
    "redecodes": redecodes,
}
for name, pairs in parts.items():
    a = set_scores((p, g) for p, _, g in pairs)
    b = set_scores((f, g) for _, f, g in pairs)
    report["parts"][name] = {
        "documents": len(pairs),
        "plain": {"micro_f1": a.micro_f1, "precision": a.total.precision, "recall": a.total.recall},
        "grounded_redecode": {"micro_f1": b.micro_f1, "precision": b.total.precision, "recall": b.total.recall},
        "paired_bootstrap_redecode_minus_plain": paired_comparison(b.per_document, a.per_document, 1000).to_json(),
    }
json.dump(report, sys.stdout, indent=1)
