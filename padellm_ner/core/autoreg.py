"""The autoregressive baseline of the paper, AutoReg_Struct (Table 1, "structured annotation").

All label-mention pairs of a text in one output sequence, mentions in text order, then every label without
a mention as NULL: `((PER): (Cuttitta), (MISC): (1995 World Cup), (LOC): (Italy), (ORG): (NULL))`.
Labels appear as their prompt words (Chinese words for Chinese schemas), as in PaDeLLM prompts.
"""

from __future__ import annotations

import re

from .document import Document
from .schemas import CHINESE, LabelSchema

NULL = "NULL"
STRUCT_PROMPTS = {"en": "text:\n{text}\nentities:\n", CHINESE: "文本:\n{text}\n实体:\n"}


def struct_prompt(text: str, language: str) -> str:
    return STRUCT_PROMPTS[language].format(text=text)


def struct_target(document: Document, schema: LabelSchema) -> str:
    items = [f"({schema.prompt_word(e.label)}): ({e.text})" for e in document.entities]
    present = {e.label for e in document.entities}
    items += [f"({schema.prompt_word(label)}): ({NULL})" for label in schema.labels if label not in present]
    return "(" + ", ".join(items) + ")"


def parse_struct(output: str, schema: LabelSchema) -> list[tuple[str, str]]:
    """(label, mention) pairs of a structured output, in output order; NULL items and junk are skipped.

    Item boundaries are the known label words, so a mention may itself hold parentheses or commas.
    """
    words = sorted((schema.prompt_word(label) for label in schema.labels), key=len, reverse=True)
    starts = list(re.finditer(r"\((" + "|".join(map(re.escape, words)) + r")\): \(", output))
    pairs = []
    for match, following in zip(starts, [*starts[1:], None]):
        end = following.start() if following else len(output)
        body = output[match.end() : end].rstrip()
        if following:
            body = body.removesuffix(",").rstrip()
            body = body.removesuffix(")")
        else:
            body = body.split("\n", 1)[0].rstrip()
            body = body.removesuffix("))") if body.endswith("))") else body.removesuffix(")")
        body = body.strip()
        if body and body != NULL:
            pairs.append((schema.label_for_word(match.group(1)), body))
    return pairs
