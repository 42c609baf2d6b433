"""Drafts for prompt-lookup decoding: guesses of a sequence's next tokens, copied from its prompt.

A mention is a span of the document, so once a sequence has begun one, the tokens that follow the same words
in the document are a good guess of what comes next. The decoder feeds such a draft with the sequence's next
token and keeps the longest part of it that greedy decoding would have chosen itself (plus the model's own
token after it), so the output is the greedy output, in fewer forwards. The matching is that of transformers'
prompt lookup (the first earlier occurrence of the longest n-gram that ends the sequence, searched in the
prompt and the sequence so far), with one difference that suits copying: tokens match when they spell the
same text up to leading spaces, because a mention's first word follows "<mention k>" with no space, while
in the document it follows one ("Japan" vs " Japan" are two tokens). Where a word splits into other tokens
without its space (" Syria" is one token, "Syria" two: "Sy", "ria"), the tokens cannot match; then the word
being written is looked up as text in the document and the document's text after it, tokenized from the
word's start, gives the draft, provided that tokenization begins with the very tokens written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_LOOKUP_TOKENS = 4  # draft length; 0 turns prompt lookup off
MAX_NGRAM = 3
WORD_TOKENS = 6  # how many trailing tokens may spell the word being written
COPY_CHARS = 64  # how much document text after that word is tokenized for a draft


def lookup_keys(token_texts: Sequence[str]) -> list[int]:
    """For every token id (`token_texts[id]` is its text), the id of the first token that spells the same text
    without its leading spaces: the key under which drafts are matched. Tokens that spell nothing match only
    themselves."""
    first: dict[str, int] = {}
    return [first.setdefault(text.lstrip(" "), i) if text.strip() else i for i, text in enumerate(token_texts)]


def document_lookup(engine_model, prompt_ids: Sequence[int], text: str, max_tokens: int) -> PromptLookup | None:
    """Drafts for the sequences that continue `prompt_ids`, the prompt of the document `text`, from an engine model
    (its lookup keys and tokenizer); None where drafting is off (max_tokens 0)."""
    if max_tokens <= 0:
        return None
    return PromptLookup(
        prompt_ids, engine_model.lookup_keys, max_tokens, text, engine_model.encode, engine_model.decode
    )


@dataclass
class PromptLookup:
    """Drafts for the sequences that continue one prompt (a document's prompt, shared by all its branches)."""

    source_ids: Sequence[int]  # the prompt's token ids: where drafts are copied from
    keys: Sequence[int]  # lookup_keys of the tokenizer
    max_tokens: int = DEFAULT_LOOKUP_TOKENS
    text: str = ""  # the document as text, and the tokenizer's two directions: for words split differently
    encode: Callable[[str], list[int]] | None = None
    decode: Callable[[list[int]], str] | None = None

    def __post_init__(self):
        self._source_keys = [self.keys[t] for t in self.source_ids]

    def draft(self, generated: Sequence[int], limit: int, stop_ids) -> list[int]:
        """Up to min(max_tokens, limit) tokens that followed the last n-gram of `generated` (n = 3..1) at its
        first earlier occurrence; a draft ends before a stop token (the model's own token decides the stop)."""
        limit = min(self.max_tokens, limit)
        if limit <= 0 or not generated:
            return []
        ids = [*self.source_ids, *generated]
        keys = [*self._source_keys, *(self.keys[t] for t in generated)]
        for n in range(min(MAX_NGRAM, len(generated)), 0, -1):
            tail = keys[-n:]
            for start in range(len(keys) - n):
                if keys[start : start + n] == tail:
                    draft = _before_stop(ids[start + n : start + n + limit], stop_ids)
                    if draft:
                        return draft
        return self._copy_word(generated, limit, stop_ids)

    def _copy_word(self, generated: Sequence[int], limit: int, stop_ids) -> list[int]:
        if not (self.text and self.encode and self.decode):
            return []
        words = self.decode(list(generated[-WORD_TOKENS:])).split()[-1:]  # the trailing run of non-space text
        if not words:
            return []
        word = words[0]
        start = self.text.find(word)
        while start >= 0:
            ids = self.encode(self.text[start : start + len(word) + COPY_CHARS])
            spelled = next((j for j in range(1, len(ids) + 1) if len(self.decode(ids[:j])) >= len(word)), 0)
            if spelled and self.decode(ids[:spelled]) == word and list(generated[-spelled:]) == ids[:spelled]:
                return _before_stop(ids[spelled : spelled + limit], stop_ids)
            start = self.text.find(word, start + 1)
        return []


def _before_stop(tokens: Sequence[int], stop_ids) -> list[int]:
    """The tokens up to the first stop token: a draft never proposes a stop (the model's own token decides it)."""
    draft = []
    for token in tokens:
        if token in stop_ids:
            break
        draft.append(token)
    return draft
