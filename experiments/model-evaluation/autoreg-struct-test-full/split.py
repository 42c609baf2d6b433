"""Split the CoNLL-2003 test file into two halves at a -DOCSTART- line, about half of the tokens each, so that
two single-threaded evals can run side by side (on 2 cores: 1.5x the documents per hour of one 2-thread eval
for AutoReg_Struct's batch-1 decoding).

usage: split.py TEST.txt FIRST_DIR SECOND_DIR   (writes FIRST_DIR/test.txt, SECOND_DIR/test.txt; prints the offset)
"""

import sys
from pathlib import Path


def main(source, first, second):
    blocks = [b for b in Path(source).read_text().split("\n\n") if b.strip()]
    starts = [b.startswith("-DOCSTART-") for b in blocks]
    tokens = [0 if s else len(b.splitlines()) for b, s in zip(blocks, starts)]
    half, seen, cut = sum(tokens) / 2, 0, None
    for i, (start, n) in enumerate(zip(starts, tokens)):
        if start and cut is None and seen >= half:
            cut = i
        seen += n
    for folder, part in ((first, blocks[:cut]), (second, blocks[cut:])):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "test.txt").write_text("\n\n".join(part) + "\n\n")
    print(sum(not s for s in starts[:cut]))


if __name__ == "__main__":
    main(*sys.argv[1:])
