"""Step 2 of 3. `python redecode_word_aligned.py PASS.jsonl OUT.jsonl`: re-decode the absent sequences of a recorded
pass under the judged rule: the output must be a span of whole words of the text (it starts where a word starts
and stops only where one ends, words as `padellm_ner.core.grounding.occurrences` sees them
at most 128
characters), written as one regular expression (the form TGI's `grammar` takes) and enforced token by token with
the `regex` module's partial matching: the best-scoring token (of the 2,048 best) that keeps the output a prefix
of a span."""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repository
import regex
import torch
from padellm_ner.core import get_schema, template_for, parse_count
from workers.engine.loading import load_engine_model

ROOT = Path(__file__).resolve().parents[4]

MAX_MENTION_CHARS = 128


def _starts_ends(text, language):
    n = len(text)
    if language == "zh":
        starts = [a for a in range(n) if not text[a].isspace()]
        ends = {e for e in range(1, n + 1) if not text[e - 1].isspace()}
        return starts, ends
    def glued(i):  # a letter or digit on both sides of position i
        return 0 < i < n and text[i - 1].isalnum() and text[i].isalnum()
    starts = [a for a in range(n) if not text[a].isspace() and not glued(a)]
    ends = {e for e in range(1, n + 1) if not text[e - 1].isspace() and not glued(e)}
    return starts, ends


def mention_regex(text, language="en", max_chars=MAX_MENTION_CHARS):
    starts, ends = _starts_ends(text, language)
    alternatives = []
    for a in starts:
        cuts = [e for e in range(a + 1, min(len(text), a + max_chars) + 1) if e in ends]
        if not cuts:
            continue
        # nested optionals: piece(a..c1) (?: piece(c1..c2) (?: ... )? )?
        pieces = []
        prev = a
        for e in cuts:
            pieces.append(regex.escape(text[prev:e]))
            prev = e
        pattern = pieces[-1]
        for piece in reversed(pieces[:-1]):
            pattern = f"{piece}(?:{pattern})?"
        alternatives.append(pattern)
    return "(?:" + "|".join(alternatives) + ")"


torch.set_num_threads(2)
schema = get_schema("conll03")
tmpl = template_for("en")
m = load_engine_model(ROOT / "models" / "padellm-conll03", device="cpu")
stop = frozenset({m.eos_id, *m.newline_ids})


def constrained(text, prompt_ids, max_new=48):
    pat = regex.compile(mention_regex(text))
    ids, lps = [], []
    o = m.model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    cache, logits = o.past_key_values, o.logits[0, -1]
    for _ in range(max_new):
        lp = torch.log_softmax(logits.float(), -1)
        order = torch.argsort(lp, descending=True).tolist()
        cur = m.decode(ids)
        choice = None
        for t in order[:2048]:
            if t in stop:
                if cur and pat.fullmatch(cur):
                    choice = t
                    break
                continue
            s = m.decode(ids + [t])
            if s != cur and pat.fullmatch(s, partial=True):
                choice = t
                break
        if choice is None or choice in stop:
            return cur, sum(lps), len(ids) + 1, "stop" if choice is not None else "none"
        ids.append(choice)
        lps.append(float(lp[choice]))
        o = m.model(input_ids=torch.tensor([[choice]]), past_key_values=cache, use_cache=True)
        cache, logits = o.past_key_values, o.logits[0, -1]
    return m.decode(ids), sum(lps), len(ids), "length"


rows = [json.loads(line) for line in open(sys.argv[1])]
out = open(sys.argv[2], "w")
t0 = time.time()
n = 0
with torch.inference_mode():
    for r in rows:
        counts = {c[0]: c[1] for c in r["counts"]}
        new = []
        for label, k, old, raw, lp, ntok, fin in r["repairs"]:
            cnt = parse_count(counts[label]).value
            pids = m.encode(tmpl.shared_prefix(r["text"]), special=True) + m.encode(
                tmpl.label_branch(schema.prompt_word(label)) + tmpl.mention_suffix(cnt, k))
            raw2, lp2, nt2, fin2 = constrained(r["text"], pids)
            new.append([label, k, old, raw2, lp2, nt2, fin2])
            n += 1
        r["repairs"] = new
        out.write(json.dumps(r) + "\n")
print("redecoded", n, f"{time.time()-t0:.1f}s")
