"""Join the predictions of two evals run on the two halves of the CoNLL-2003 test file into one file with the
ids of the whole file (`test-N`, N counted over the whole file), so `padellm-ner score` can read it.

usage: merge.py FIRST_HALF.jsonl SECOND_HALF.jsonl OFFSET REFERENCE.jsonl OUT.jsonl
OFFSET: the sentences in the first half. REFERENCE: any predictions on the whole file (here PaDeLLM's), used only
to check that every merged id carries the same sentence text as in the whole file.
"""

import json
import sys


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(first, second, offset, reference, out):
    offset = int(offset)
    merged = read(first)
    assert [r["id"] for r in merged] == [f"test-{i}" for i in range(offset)], "first half: unexpected ids"
    for i, record in enumerate(read(second)):
        assert record["id"] == f"test-{i}", f"second half: unexpected id {record['id']}"
        merged.append({**record, "id": f"test-{i + offset}"})
    texts = {r["id"]: r["text"] for r in read(reference)}
    assert len(texts) == len(merged), f"{len(merged)} merged against {len(texts)} in the reference"
    differing = [r["id"] for r in merged if texts.get(r["id"]) != r["text"]]
    assert not differing, f"texts differ from the reference at {differing[:5]}"
    with open(out, "w") as f:
        for record in merged:
            f.write(json.dumps(record) + "\n")
    print(f"{len(merged)} documents -> {out}; texts match the reference id by id")


if __name__ == "__main__":
    main(*sys.argv[1:])
