"""Tokenized training documents: one shared prefix and its branches (prompt part, target part).

PaDeLLM: the prefix is the part of every prompt before the label ("text:\\n{text}\\nentity type:\\n"); each
reformulated example is a branch "{label}\\n\\n<num>" + target + eos. All branches of a document attend to the
one encoded prefix, so the sentence is encoded once per document instead of once per example.
AutoReg_Struct: the prefix is the whole prompt and the single branch is the structured target + eos.
The loss covers the target tokens and eos only.
"""

from __future__ import annotations

from dataclasses import dataclass

from padellm_ner.core import Document, LabelSchema, reformulate, template_for
from padellm_ner.core.autoreg import struct_prompt, struct_target

PADELLM, AUTOREG_STRUCT = "padellm", "autoreg-struct"
OBJECTIVES = (PADELLM, AUTOREG_STRUCT)


@dataclass(frozen=True)
class Branch:
    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]  # ends with eos


@dataclass(frozen=True)
class TokenizedDocument:
    prefix_ids: tuple[int, ...]
    branches: tuple[Branch, ...]

    @property
    def tokens(self) -> int:
        return len(self.prefix_ids) + sum(len(b.prompt_ids) + len(b.target_ids) for b in self.branches)

    @property
    def unshared_tokens(self) -> int:
        """Tokens the same examples take when every example repeats the prefix."""
        return sum(len(self.prefix_ids) + len(b.prompt_ids) + len(b.target_ids) for b in self.branches)


def encode(tokenizer, text: str, special: bool = False) -> tuple[int, ...]:
    return tuple(tokenizer(text, add_special_tokens=special)["input_ids"])


def tokenize_document(tokenizer, document: Document, schema: LabelSchema, objective: str) -> TokenizedDocument:
    eos = (tokenizer.eos_token_id,)
    if objective == PADELLM:
        template = template_for(schema.language)
        prefix = encode(tokenizer, template.shared_prefix(document.text), special=True)
        branch_prompts: dict[str, tuple[int, ...]] = {}
        branches = []
        for example in reformulate(document, schema):
            if example.label not in branch_prompts:
                branch_prompts[example.label] = encode(
                    tokenizer, template.label_branch(schema.prompt_word(example.label))
                )
            branches.append(Branch(branch_prompts[example.label], encode(tokenizer, example.target) + eos))
        return TokenizedDocument(prefix, tuple(branches))
    if objective == AUTOREG_STRUCT:
        prefix = encode(tokenizer, struct_prompt(document.text, schema.language), special=True)
        return TokenizedDocument(prefix, (Branch((), encode(tokenizer, struct_target(document, schema)) + eos),))
    raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
