"""Count-hedge candidates (an experiment not adopted; see README.md).

    .venv/bin/python candidates.py DATA MODEL OUT_DIR [--exclude PREDICTIONS.jsonl | --include PREDICTIONS.jsonl]

For every document of DATA (less or only the ids of a predictions file): the engine's prediction
(OUT_DIR/preds.jsonl) and, per label, P(count = n+1) at the count's first token (n the greedy count) and, where
it is at least 0.02, the greedy mention n+1 asked under count n+1 with its sequence probability
(OUT_DIR/cands.json). Run from the repository root."""

import argparse
import json
import math
import time
from pathlib import Path

import torch

from padellm_ner.core import get_schema, template_for
from padellm_ner.data import read_corpus
from padellm_ner.data.formats import read_predictions
from workers.engine.decoder import greedy_decode
from workers.engine.loading import load_engine_model
from workers.engine.padellm import PadellmEngine

torch.set_num_threads(2)
parser = argparse.ArgumentParser()
for name in ("data", "model", "out", "--exclude", "--include"):
    parser.add_argument(name)
args = parser.parse_args()
docs = read_corpus(args.data).documents
if args.exclude:
    skip = {r.id for r in read_predictions(args.exclude)[1]}
    docs = [d for d in docs if d.id not in skip]
if args.include:
    keep = {r.id for r in read_predictions(args.include)[1]}
    docs = [d for d in docs if d.id in keep]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
print(len(docs), "documents", flush=True)
schema = get_schema("conll03")
m = load_engine_model(args.model, device="cpu")
engine = PadellmEngine(m)
tmpl = template_for(schema.language)
digits = [m.encode(str(d))[0] for d in range(10)]
stop = frozenset({m.eos_id, *m.newline_ids})
preds = open(out / "preds.jsonl", "w")
cands = []
t0 = time.time()
with torch.inference_mode():
    for i, doc in enumerate(docs):
        res = engine.recognize(doc.text, schema)
        preds.write(
            json.dumps(
                {
                    "id": doc.id,
                    "text": doc.text,
                    "entities": [
                        {"label": e.label, "text": e.text, "start": e.start, "end": e.end, "probability": e.probability}
                        for e in res.prediction.mentions
                    ],
                }
            )
            + "\n"
        )
        prefix = m.encode(tmpl.shared_prefix(doc.text), special=True)
        branches = [m.encode(tmpl.label_branch(schema.prompt_word(label))) for label in schema.labels]
        cache = m.model(input_ids=torch.tensor([prefix]), use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(branches))
        L = max(map(len, branches))
        ids = torch.zeros((len(branches), L), dtype=torch.long)
        att = torch.zeros((len(branches), len(prefix) + L), dtype=torch.long)
        att[:, : len(prefix)] = 1
        for r, b in enumerate(branches):
            ids[r, : len(b)] = torch.tensor(b)
            att[r, len(prefix) : len(prefix) + len(b)] = 1
        pos = len(prefix) + torch.arange(L).repeat(len(branches), 1)
        all_logits = m.model(input_ids=ids, attention_mask=att, position_ids=pos, past_key_values=cache).logits
        logits = torch.stack([all_logits[r, len(b) - 1] for r, b in enumerate(branches)]).float()
        p = logits.softmax(-1)
        for r, label in enumerate(schema.labels):
            top = int(logits[r].argmax())
            if top not in digits or digits.index(top) >= 9:
                continue
            n = digits.index(top)
            pn1 = float(p[r, digits[n + 1]])
            row = {"id": doc.id, "label": label, "n": n, "p_n": float(p[r, top]), "p_next": pn1}
            if pn1 >= 0.02:
                mids = prefix + m.encode(
                    tmpl.label_branch(schema.prompt_word(label)) + tmpl.mention_suffix(n + 1, n + 1)
                )
                g = greedy_decode(m.model, [mids], stop_ids=stop, max_new_tokens=48, pad_id=m.pad_id)[0]
                row.update(mention=m.decode(g.token_ids), prob=math.exp(sum(g.logprobs)), finish=g.finish)
            cands.append(row)
        if i % 100 == 0:
            print(i, f"{time.time() - t0:.0f}s", sum("mention" in c for c in cands), flush=True)
preds.close()
json.dump(cands, open(out / "cands.json", "w"))
print("done", flush=True)
