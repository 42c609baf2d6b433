"""Prompt templates, byte-identical to the official PaDeLLM-NER inference scripts (FACTS.md §1).

Step 1 asks for the number of mentions of one label; step 2 appends the count and the index of the
mention to produce. A training example's target continues the step-1 prompt with
`{count}\\n<mention {k}>{mention}` (then eos); a label with no mention has the target `0` (then eos).
"""

from __future__ import annotations

from dataclasses import dataclass

from .schemas import CHINESE, ENGLISH


@dataclass(frozen=True)
class PromptTemplate:
    language: str
    step1: str  # fields: text, label
    mention_marker: str  # field: k

    def count_prompt(self, text: str, label_word: str) -> str:
        return self.step1.format(text=text, label=label_word)

    def shared_prefix(self, text: str) -> str:
        """The part of every prompt of a document that precedes the label: encoded once, shared by all."""
        return self.step1[: self.step1.index("{label}")].format(text=text)

    def label_branch(self, label_word: str) -> str:
        """What follows the shared prefix in a step-1 prompt: shared_prefix + label_branch == count_prompt."""
        return self.step1[self.step1.index("{label}") :].format(label=label_word)

    def mention_suffix(self, count: int, k: int) -> str:
        """What step 2 appends to the step-1 prompt: the count, a newline and the k-th mention marker."""
        if not 1 <= k <= count:
            raise ValueError(f"mention index k={k} outside 1..{count}")
        return f"{count}\n" + self.mention_marker.format(k=k)

    def mention_prompt(self, text: str, label_word: str, count: int, k: int) -> str:
        return self.count_prompt(text, label_word) + self.mention_suffix(count, k)

    def target(self, count: int, k: int | None = None, mention: str | None = None) -> str:
        """The training target after the step-1 prompt, without eos (the tokenizer appends it)."""
        if count == 0:
            return "0"
        if k is None or mention is None:
            raise ValueError("a non-zero count needs k and the mention")
        return self.mention_suffix(count, k) + mention


TEMPLATES = {
    ENGLISH: PromptTemplate(ENGLISH, "text:\n{text}\nentity type:\n{label}\n\n<num>", "<mention {k}>"),
    CHINESE: PromptTemplate(CHINESE, "文本:\n{text}\n指定NER标签:\n{label}\n\n<数量>", "<第{k}文段>"),
}


def template_for(language: str) -> PromptTemplate:
    try:
        return TEMPLATES[language]
    except KeyError:
        raise KeyError(f"no prompt template for language {language!r}; known: {', '.join(TEMPLATES)}") from None
