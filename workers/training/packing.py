"""Packing tokenized documents into fixed-length rows with a block attention mask.

A row holds several documents one after another. Inside a document, prefix tokens attend causally to the
prefix; a branch token attends to the whole prefix and causally to its own branch, never to a sibling
branch. Position ids restart after the prefix for every branch, so each branch sees exactly the positions
it will have at inference, where the prefix is encoded once and every branch continues from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from .examples import TokenizedDocument

IGNORE = -100


@dataclass
class Row:
    input_ids: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)  # the next token to predict at each position, or IGNORE
    positions: list[int] = field(default_factory=list)
    documents: list[int] = field(default_factory=list)  # document number inside the row
    branches: list[int] = field(default_factory=list)  # 0 for the prefix, 1.. for branches

    def __len__(self) -> int:
        return len(self.input_ids)


def _append(row: Row, doc: TokenizedDocument, number: int) -> None:
    prefix = list(doc.prefix_ids)
    row.input_ids += prefix
    row.targets += [IGNORE] * len(prefix)
    row.positions += list(range(len(prefix)))
    row.documents += [number] * len(prefix)
    row.branches += [0] * len(prefix)
    for b, branch in enumerate(doc.branches, start=1):
        tokens = list(branch.prompt_ids) + list(branch.target_ids)
        first_target = len(branch.prompt_ids)
        if first_target == 0:
            # No branch prompt (AutoReg_Struct): the prefix's last token predicts the first target token.
            if b > 1:
                raise ValueError("only a single branch may continue the prefix directly")
            row.targets[-1] = tokens[0]
        for j in range(len(tokens)):
            row.targets.append(tokens[j + 1] if j + 1 < len(tokens) and j + 1 >= first_target else IGNORE)
        row.input_ids += tokens
        row.positions += list(range(len(prefix), len(prefix) + len(tokens)))
        row.documents += [number] * len(tokens)
        row.branches += [b] * len(tokens)


def split_to_fit(doc: TokenizedDocument, max_tokens: int) -> list[TokenizedDocument]:
    """A document too long for one row becomes several, each with the prefix and a share of the branches.

    A single branch that does not fit even alone keeps a row of its own, longer than max_tokens.
    """
    if doc.tokens <= max_tokens:
        return [doc]
    parts: list[list] = [[]]
    size = len(doc.prefix_ids)
    for branch in doc.branches:
        length = len(branch.prompt_ids) + len(branch.target_ids)
        if parts[-1] and size + length > max_tokens:
            parts.append([])
            size = len(doc.prefix_ids)
        parts[-1].append(branch)
        size += length
    return [TokenizedDocument(doc.prefix_ids, tuple(part)) for part in parts]


def pack(documents: list[TokenizedDocument], max_tokens: int, seed: int = 0) -> list[Row]:
    """Rows of at most max_tokens (but for single over-long branches); documents shuffled, packed in order."""
    pieces = [piece for doc in documents for piece in split_to_fit(doc, max_tokens)]
    order = list(range(len(pieces)))
    random.Random(seed).shuffle(order)
    rows: list[Row] = []
    current = Row()
    count = 0
    for index in order:
        doc = pieces[index]
        if len(current) and len(current) + doc.tokens > max_tokens:
            rows.append(current)
            current, count = Row(), 0
        _append(current, doc, count)
        count += 1
    if len(current):
        rows.append(current)
    return rows


def collate(rows: list[Row], pad_id: int, multiple: int = 8) -> dict[str, torch.Tensor]:
    """Tensors for one batch; lengths padded to a multiple of 8 (bf16 CPU kernels stall on odd shapes)."""
    length = max(len(r) for r in rows)
    length = (length + multiple - 1) // multiple * multiple

    def pad(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (length - len(values))

    input_ids = torch.tensor([pad(r.input_ids, pad_id) for r in rows])
    targets = torch.tensor([pad(r.targets, IGNORE) for r in rows])
    positions = torch.tensor([pad(r.positions, 0) for r in rows])
    documents = torch.tensor([pad(r.documents, -1) for r in rows])
    branches = torch.tensor([pad(r.branches, 0) for r in rows])
    index = torch.arange(length)
    causal = index[None, :] <= index[:, None]  # key <= query
    same_doc = documents[:, :, None] == documents[:, None, :]
    visible_branch = (branches[:, None, :] == 0) | (branches[:, None, :] == branches[:, :, None])
    padding = documents == -1
    # padding tokens only see themselves, so no attention row is empty
    pad_self = padding[:, :, None] & torch.eye(length, dtype=torch.bool)[None]
    mask = (causal[None] & same_doc & visible_branch & ~padding[:, :, None]) | pad_self
    return {"input_ids": input_ids, "targets": targets, "position_ids": positions, "attention_mask": mask[:, None]}
