"""An independent re-statement of the official scorer's semantics (FACTS.md §1: eval/dedu.py and
eval/eval_dedu.py), written in the most literal way, to check the project's implementation against.

Results rows: {"pred": {label: [[mention, prob], ...]}, "gt": {label: [mention, ...]}}.
"""

import copy


def official_dedup(rows):
    rows = copy.deepcopy(rows)
    for row in rows:
        pred = row["pred"]
        labels_of = {}
        for label, items in pred.items():
            for mention, _ in items:
                labels_of.setdefault(mention, set()).add(label)
        for mention, labels in labels_of.items():
            if len(labels) < 2:
                continue
            best_label, best_prob = None, None
            for label, items in pred.items():  # first maximum in prediction order wins
                for m, p in items:
                    if m == mention and (best_prob is None or p > best_prob):
                        best_label, best_prob = label, p
            for label in pred:
                if label != best_label:
                    pred[label] = [item for item in pred[label] if item[0] != mention]
    return rows


def official_micro_macro(rows):
    tp = fp = fn = 0
    per = {}
    for row in rows:
        for label in set(row["pred"]) | set(row["gt"]):
            g = set(row["gt"].get(label, []))
            p = {m for m, _ in row["pred"].get(label, [])}
            t = len([x for x in p if x in g])
            f = len([x for x in p if x not in g])
            n = len([x for x in g if x not in p])
            tp, fp, fn = tp + t, fp + f, fn + n
            c = per.setdefault(label, [0, 0, 0])
            c[0] += t
            c[1] += f
            c[2] += n

    def f1(t, f, n):
        p = t / (t + f) if t + f else 0
        r = t / (t + n) if t + n else 0
        return 2 * p * r / (p + r) if p + r else 0

    macro = sum(f1(*c) for c in per.values()) / len(per) if per else 0
    return f1(tp, fp, fn), macro
