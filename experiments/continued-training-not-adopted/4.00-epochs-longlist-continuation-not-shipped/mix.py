"""`python mix.py OUT.txt`: the continuation's corpus, as a CoNLL file: the 303 CoNLL-2003 training sentences in
which one label has 4 or more mentions, and a seeded random 1,200 (seed 20) of the other training sentences, in
corpus order (`train --oversample-min-mentions 4 --oversample-times 2` then repeats the first kind once)."""

import random
import sys
from collections import Counter
from pathlib import Path

from padellm_ner.data import read_corpus
from padellm_ner.data.columns import write_columns

TRAIN = Path(__file__).resolve().parents[5] / "shared/datasets/conll2003/original/train.txt"


def long_list(document):
    counts = Counter(entity.label for entity in document.entities)
    return bool(counts) and max(counts.values()) >= 4


documents = read_corpus(TRAIN).documents
others = [d for d in documents if not long_list(d)]
keep = {d.id for d in documents if long_list(d)} | {d.id for d in random.Random(20).sample(others, 1200)}
Path(sys.argv[1]).write_text(write_columns([d for d in documents if d.id in keep]))
print(len(keep), "sentences")
