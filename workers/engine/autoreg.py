"""The AutoReg_Struct baseline on the same engine: one prompt per document, one long greedy sequence.

The model writes every label-mention pair in one structured string (`core.autoreg`), so each pair waits for
all before it: the sequential decoding that PaDeLLM replaces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from padellm_ner.core import DocumentPrediction, LabelSchema, PredictedMention, ground, split_absent
from padellm_ner.core.autoreg import parse_struct, struct_prompt

from .decoder import DecodeStats, greedy_decode
from .loading import EngineModel
from .lookup import DEFAULT_LOOKUP_TOKENS, document_lookup


@dataclass
class AutoregResult:
    prediction: DocumentPrediction
    raw: str
    latency_s: float
    generated_tokens: int
    forward_calls: int
    drafted_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def tokens_per_sequence(self) -> float:
        return float(self.generated_tokens)


class AutoregStructEngine:
    def __init__(self, engine_model: EngineModel, *, max_new_tokens: int = 256,
                 lookup_tokens: int = DEFAULT_LOOKUP_TOKENS):
        """`lookup_tokens`: prompt-lookup drafts as in PadellmEngine (from the prompt and the output so far)."""
        self.m = engine_model
        self.max_new_tokens = max_new_tokens
        self.lookup_tokens = lookup_tokens

    def recognize(self, text: str, schema: LabelSchema) -> AutoregResult:
        stats = DecodeStats()
        started = time.perf_counter()
        prompt = self.m.encode(struct_prompt(text, schema.language), special=True)
        lookup = document_lookup(self.m, prompt, text, self.lookup_tokens)
        (generated,) = greedy_decode(self.m.model, [prompt], stop_ids=frozenset({self.m.eos_id}),
                                     max_new_tokens=self.max_new_tokens, pad_id=self.m.pad_id, stats=stats,
                                     lookup=lookup)
        raw = self.m.decode(generated.token_ids)
        pairs, absent = split_absent(text, parse_struct(raw, schema), lambda pair: pair[1])
        spans = ground(text, pairs, schema.language)
        mentions = tuple(
            PredictedMention(label, 0, mention, None, *(span or (None, None)))
            for (label, mention), span in zip(pairs, spans)
        )
        latency = time.perf_counter() - started
        prediction = DocumentPrediction(text, mentions, (), absent=tuple(PredictedMention(label, 0, mention, None)
                                                                          for label, mention in absent))
        return AutoregResult(prediction, raw, latency, generated.generated_tokens, stats.forward_calls,
                             stats.drafted_tokens, stats.accepted_tokens)
