"""Recall and precision of (label, string) pairs split by whether the string is a mention of that label in train."""
import json, sys
sys.path.insert(0, '/work/main')
from padellm_ner.data import read_corpus
train = read_corpus('/work/shared/datasets/conll2003/original/train.txt', 'auto').documents
seen = {(e.label, e.text) for d in train for e in d.entities}
seen_any = {e.text for d in train for e in d.entities}
gold_docs = read_corpus(sys.argv[2], 'auto').documents
pred = {json.loads(l)['id']: json.loads(l) for l in open(sys.argv[1])}
stats = {k: [0, 0, 0] for k in ('seen', 'seen-other-label', 'unseen')}  # tp, fn, fp
def kind(l, t): return 'seen' if (l, t) in seen else ('seen-other-label' if t in seen_any else 'unseen')
for d in gold_docs:
    g = {(e.label, e.text) for e in d.entities}
    p = {(e['label'], e['text']) for e in pred[d.id]['entities']}
    for x in g: stats[kind(*x)][0 if x in p else 1] += 1
    for x in p - g: stats[kind(*x)][2] += 1
for k, (tp, fn, fp) in stats.items():
    print(f"{k:18s} gold {tp+fn:5d} recall {100*tp/max(1,tp+fn):6.2f}  false pos {fp:4d} precision {100*tp/max(1,tp+fp):6.2f}")
print()
for label in ('PER', 'LOC', 'ORG', 'MISC'):
    st = {k: [0, 0, 0] for k in ('seen', 'seen-other-label', 'unseen')}
    for d in gold_docs:
        g = {(e.label, e.text) for e in d.entities if e.label == label}
        p = {(e['label'], e['text']) for e in pred[d.id]['entities'] if e['label'] == label}
        for x in g: st[kind(*x)][0 if x in p else 1] += 1
        for x in p - g: st[kind(*x)][2] += 1
    print(label, '  '.join(f"{k}: n={tp+fn} R={100*tp/max(1,tp+fn):.1f} fp={fp}" for k, (tp, fn, fp) in st.items()))
