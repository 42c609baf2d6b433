"""Step 1 of 3. `python pass.py CORPUS OUT.jsonl`: the shipped model's raw counts and mentions for every document
(the engine, greedy, as `padellm-ner eval`) and, for each mention whose string the text lacks, a greedy re-decode
of that (label, k) sequence constrained to any substring of the text (top 64 tokens per step): the reference
variant. `redecode_word_aligned.py` re-decodes the same sequences under the rule that was judged."""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repository
import torch
from padellm_ner.core import get_schema, template_for, parse_counts
from padellm_ner.data import read_corpus
from workers.engine.loading import load_engine_model
from workers.engine.padellm import PadellmEngine

ROOT = Path(__file__).resolve().parents[4]

torch.set_num_threads(2)
docs = read_corpus(sys.argv[1]).documents
out = open(sys.argv[2], "w")
schema = get_schema("conll03")
m = load_engine_model(ROOT / "models" / "padellm-conll03", device="cpu")
engine = PadellmEngine(m)
tmpl = template_for(schema.language)
stop = frozenset({m.eos_id, *m.newline_ids})
TOPK = 64


def constrained(text, prompt_ids, max_new=48):
    ids, lps = [], []
    logits_out = m.model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    cache = logits_out.past_key_values
    logits = logits_out.logits[0, -1]
    for _ in range(max_new):
        lp = torch.log_softmax(logits.float(), -1)
        top = torch.topk(lp, TOPK).indices.tolist()
        choice = None
        cur = m.decode(ids).strip()
        for t in top:
            if t in stop:
                if cur:
                    choice = t
                    break
                continue
            s = m.decode(ids + [t]).strip()
            if s and s in text:
                choice = t
                break
        if choice is None or choice in stop:
            return m.decode(ids), sum(lps), len(ids) + (choice is not None), "stop" if choice is not None else "none"
        ids.append(choice)
        lps.append(float(lp[choice]))
        o = m.model(input_ids=torch.tensor([[choice]]), past_key_values=cache, use_cache=True)
        cache, logits = o.past_key_values, o.logits[0, -1]
    return m.decode(ids), sum(lps), len(ids), "length"


t0 = time.time()
nabs = 0
with torch.inference_mode():
    for i, doc in enumerate(docs):
        res = engine.recognize(doc.text, schema)
        parsed = parse_counts(res.counts, engine.max_count)
        row = {"id": doc.id, "text": doc.text,
               "counts": [[c.label, c.raw, c.logprob, c.generated_tokens] for c in res.counts],
               "mentions": [[r.label, r.k, r.raw, r.logprob, r.generated_tokens] for r in res.mentions],
               "repairs": []}
        for a in res.prediction.absent:
            n = parsed[a.label].value
            pids = m.encode(tmpl.shared_prefix(doc.text), special=True) + m.encode(
                tmpl.label_branch(schema.prompt_word(a.label)) + tmpl.mention_suffix(n, a.k))
            raw, lp, ntok, fin = constrained(doc.text, pids)
            row["repairs"].append([a.label, a.k, a.text, raw, lp, ntok, fin])
            nabs += 1
        out.write(json.dumps(row) + "\n")
        if i % 100 == 0:
            print(i, f"{time.time() - t0:.0f}s", "absent", nabs, flush=True)
out.close()
print("done", len(docs), f"{time.time() - t0:.0f}s", "absent", nabs, flush=True)
