"""Step 1 of 3. `python pass.py CORPUS OUT.jsonl`: the shipped model's raw counts and mentions for every document
(the engine, greedy, as `padellm-ner eval`) and the mention sequences whose string the text lacks (`absent`:
label, k, string), which grounding sets aside and `redecode.py` decodes again."""

import json
import sys
import time
from pathlib import Path

import torch

from padellm_ner.core import get_schema
from padellm_ner.data import read_corpus
from workers.engine.loading import load_engine_model
from workers.engine.padellm import PadellmEngine

MODEL = Path(__file__).resolve().parents[2]  # models/padellm-conll03

torch.set_num_threads(2)
docs = read_corpus(sys.argv[1]).documents
schema = get_schema("conll03")
engine = PadellmEngine(load_engine_model(MODEL, device="cpu"))
started = time.time()
absent = 0
with torch.inference_mode(), open(sys.argv[2], "w") as out:
    for i, doc in enumerate(docs):
        result = engine.recognize(doc.text, schema)
        row = {
            "id": doc.id,
            "text": doc.text,
            "counts": [[c.label, c.raw, c.logprob, c.generated_tokens] for c in result.counts],
            "mentions": [[r.label, r.k, r.raw, r.logprob, r.generated_tokens] for r in result.mentions],
            "absent": [[a.label, a.k, a.text] for a in result.prediction.absent],
        }
        absent += len(row["absent"])
        out.write(json.dumps(row) + "\n")
        if i % 100 == 0:
            print(i, f"{time.time() - started:.0f}s", "absent", absent, flush=True)
print("done", len(docs), f"{time.time() - started:.0f}s", "absent", absent, flush=True)
