"""`python split.py PREDICTIONS.jsonl PREFIX`: a dev prediction file's two parts, PREFIX-s800.jsonl (the seeded
sample of 800 that `eval --sample 800 --seed 3` draws) and PREFIX-rest.jsonl (the other 2,450)."""

import json
import sys
from pathlib import Path

from padellm_ner.data import read_corpus
from padellm_ner.data.selection import select_documents

VALID = Path(__file__).resolve().parents[5] / "shared/datasets/conll2003/original/valid.txt"

sample = {d.id for d in select_documents(read_corpus(VALID).documents, sample=800, seed=3)}
with (
    open(sys.argv[1]) as rows,
    open(f"{sys.argv[2]}-s800.jsonl", "w") as a,
    open(f"{sys.argv[2]}-rest.jsonl", "w") as b,
):
    for line in rows:
        (a if json.loads(line)["id"] in sample else b).write(line)
