"""Step 2 of 3. `python redecode.py PASS.jsonl OUT.jsonl [--constraint word-aligned|any-substring]`: decode every
absent sequence of a recorded pass again, greedily, taking at each step the best-scoring token that the
constraint allows, and add the results to each row (`repairs`: label, k, greedy string, new raw output, its
log-probability, tokens, finish).

- word-aligned (the judged rule): the output must be a span of whole words of the text (it starts where a word
  starts and stops only where one ends, words as `padellm_ner.core.grounding.occurrences` sees them; at most 128
  characters), written as one regular expression (the form TGI's `grammar` takes) and enforced token by token
  with the `regex` module's partial matching; among the 2,048 best tokens.
- any-substring (the reference): the stripped output must occur in the text; among the 64 best tokens.
"""

import argparse
import json
import time
from pathlib import Path

import regex
import torch

from padellm_ner.core import get_schema, parse_count, template_for
from workers.engine.loading import load_engine_model

MODEL = Path(__file__).resolve().parents[2]  # models/padellm-conll03
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
    """Every word-aligned span of the text: per start, nested optionals piece(a..c1)(?:piece(c1..c2)(?:...)?)?"""
    starts, ends = _starts_ends(text, language)
    alternatives = []
    for a in starts:
        cuts = [e for e in range(a + 1, min(len(text), a + max_chars) + 1) if e in ends]
        if not cuts:
            continue
        pieces = [regex.escape(text[prev:e]) for prev, e in zip([a, *cuts], cuts)]
        pattern = pieces[-1]
        for piece in reversed(pieces[:-1]):
            pattern = f"{piece}(?:{pattern})?"
        alternatives.append(pattern)
    return "(?:" + "|".join(alternatives) + ")"


class WordAligned:
    candidates = 2048

    def __init__(self, text):
        self.pattern = regex.compile(mention_regex(text))

    def extends(self, current, extended):
        return extended != current and bool(self.pattern.fullmatch(extended, partial=True))

    def may_stop(self, current):
        return bool(current) and bool(self.pattern.fullmatch(current))


class AnySubstring:
    candidates = 64

    def __init__(self, text):
        self.text = text

    def extends(self, current, extended):
        return bool(extended.strip()) and extended.strip() in self.text

    def may_stop(self, current):
        return bool(current.strip())


CONSTRAINTS = {"word-aligned": WordAligned, "any-substring": AnySubstring}


def constrained(m, stop, constraint, prompt_ids, max_new=48):
    ids, logprobs = [], []
    output = m.model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    cache, logits = output.past_key_values, output.logits[0, -1]
    for _ in range(max_new):
        logprob = torch.log_softmax(logits.float(), -1)
        current = m.decode(ids)
        choice = None
        for t in torch.topk(logprob, constraint.candidates).indices.tolist():
            if t in stop:
                if constraint.may_stop(current):
                    choice = t
                    break
            elif constraint.extends(current, m.decode(ids + [t])):
                choice = t
                break
        if choice is None:
            return current, sum(logprobs), len(ids), "none"
        if choice in stop:
            return current, sum(logprobs), len(ids) + 1, "stop"
        ids.append(choice)
        logprobs.append(float(logprob[choice]))
        output = m.model(input_ids=torch.tensor([[choice]]), past_key_values=cache, use_cache=True)
        cache, logits = output.past_key_values, output.logits[0, -1]
    return m.decode(ids), sum(logprobs), len(ids), "length"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("passed")
    parser.add_argument("out")
    parser.add_argument("--constraint", choices=CONSTRAINTS, default="word-aligned")
    args = parser.parse_args()
    torch.set_num_threads(2)
    schema = get_schema("conll03")
    template = template_for(schema.language)
    m = load_engine_model(MODEL, device="cpu")
    stop = frozenset({m.eos_id, *m.newline_ids})
    started, done = time.time(), 0
    with torch.inference_mode(), open(args.passed) as rows, open(args.out, "w") as out:
        for line in rows:
            row = json.loads(line)
            counts = {c[0]: parse_count(c[1]).value for c in row["counts"]}
            row["repairs"] = []
            constraint = CONSTRAINTS[args.constraint](row["text"]) if row["absent"] else None
            for label, k, greedy in row["absent"]:
                prompt = m.encode(template.shared_prefix(row["text"]), special=True) + m.encode(
                    template.label_branch(schema.prompt_word(label)) + template.mention_suffix(counts[label], k)
                )
                row["repairs"].append([label, k, greedy, *constrained(m, stop, constraint, prompt)])
                done += 1
            out.write(json.dumps(row) + "\n")
    print("redecoded", done, f"{time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
