"""`python repeats.py PASS.jsonl OUT.jsonl`: decode every excess repeat of a recorded pass again (rule R of
decision.txt): mention k of a label whose string already appeared among the label's earlier mentions as many
times as the text contains it (at least once), greedily, constrained to a word-aligned span of the text that is
not among the label's strings so far. Adds `repairs` (label, k, greedy string, new raw output, log-probability,
tokens, finish) to each row, as the grounded-redecode experiment's redecode.py, so that its score.py reads the result."""

import json
import sys
import time
from collections import defaultdict
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

import torch

from padellm_ner.core import get_schema, parse_count, template_for
from workers.engine.loading import load_engine_model

# the grounded-redecode experiment's constrained decoding, loaded from its script
_spec = spec_from_file_location(
    "redecode", Path(__file__).resolve().parents[1] / "grounded-redecode-not-adopted" / "redecode.py"
)
redecode = module_from_spec(_spec)
_spec.loader.exec_module(redecode)
WordAligned, constrained = redecode.WordAligned, redecode.constrained


class WordAlignedExcept(WordAligned):
    def __init__(self, text, excluded):
        super().__init__(text)
        self.excluded = excluded

    def may_stop(self, current):
        return super().may_stop(current) and current.strip() not in self.excluded


def excess_repeats(text, mentions):
    """(label, k) of the excess repeats, in k order per label."""
    by_label = defaultdict(list)
    for label, k, raw, *_ in mentions:
        by_label[label].append((k, raw.strip()))
    found = []
    for label, items in by_label.items():
        seen = defaultdict(int)
        for k, string in sorted(items):
            if seen[string] and seen[string] >= max(text.count(string), 1):
                found.append((label, k))
            seen[string] += 1
    return found


def main():
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    schema = get_schema("conll03")
    template = template_for(schema.language)
    m = load_engine_model(Path(__file__).resolve().parents[2], device="cpu")  # models/padellm-conll03
    stop = frozenset({m.eos_id, *m.newline_ids})
    started, done = time.time(), 0
    with torch.inference_mode(), open(sys.argv[1]) as rows, open(sys.argv[2], "w") as out:
        for line in rows:
            row = json.loads(line)
            counts = {c[0]: parse_count(c[1]).value for c in row["counts"]}
            strings = {(x[0], x[1]): x[2].strip() for x in row["mentions"]}
            row["repairs"] = []
            for label, k in excess_repeats(row["text"], row["mentions"]):
                kept = {s for (lab, j), s in strings.items() if lab == label and j < k}
                prompt = m.encode(template.shared_prefix(row["text"]), special=True) + m.encode(
                    template.label_branch(schema.prompt_word(label)) + template.mention_suffix(counts[label], k)
                )
                result = constrained(m, stop, WordAlignedExcept(row["text"], kept), prompt)
                row["repairs"].append([label, k, strings[label, k], *result])
                strings[label, k] = result[0].strip()  # later re-decodes exclude it
                done += 1
            out.write(json.dumps(row) + "\n")
    print("redecoded", done, f"{time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
