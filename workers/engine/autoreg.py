"""The AutoReg_Struct baseline on the same engine: one prompt per document, one long greedy sequence.

The model writes every label-mention pair in one structured string (`core.autoreg`), so each pair waits for
all before it: the sequential decoding that PaDeLLM replaces. A document is read in the same windows as PaDeLLM
reads it (`core.segment`), all windows in one batch, one sequence each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from padellm_ner.core import DocumentPrediction, LabelSchema, PredictedMention, ground, split_absent
from padellm_ner.core.autoreg import parse_struct, struct_prompt
from padellm_ner.core.plan import merge_windows
from padellm_ner.core.segment import WindowPolicy, split_windows

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

    windows: int = 1

    @property
    def tokens_per_sequence(self) -> float:
        """Tokens of each window's one sequence."""
        return self.generated_tokens / self.windows


class AutoregStructEngine:
    def __init__(
        self,
        engine_model: EngineModel,
        *,
        max_new_tokens: int = 256,
        lookup_tokens: int = DEFAULT_LOOKUP_TOKENS,
        window_policy: WindowPolicy | None = None,
    ):
        """`lookup_tokens`: prompt-lookup drafts as in PadellmEngine (from the prompt and the output so far)."""
        self.engine_model = engine_model
        self.max_new_tokens = max_new_tokens
        self.lookup_tokens = lookup_tokens
        self.window_policy = window_policy or WindowPolicy()

    def recognize(self, text: str, schema: LabelSchema) -> AutoregResult:
        stats = DecodeStats()
        started = time.perf_counter()
        windows = split_windows(text, schema.language, self.window_policy)
        prompts = [self.engine_model.encode(struct_prompt(w.text, schema.language), special=True) for w in windows]
        lookups = [
            document_lookup(self.engine_model, prompt, w.text, self.lookup_tokens)
            for prompt, w in zip(prompts, windows)
        ]
        generated = greedy_decode(
            self.engine_model.model,
            prompts,
            stop_ids=frozenset({self.engine_model.eos_id}),
            max_new_tokens=self.max_new_tokens,
            pad_id=self.engine_model.pad_id,
            stats=stats,
            lookup=lookups,
        )
        raws = [self.engine_model.decode(g.token_ids) for g in generated]
        predictions = [self._window_prediction(w.text, raw, schema) for w, raw in zip(windows, raws)]
        prediction = merge_windows(text, schema.labels, windows, predictions)
        return AutoregResult(
            prediction,
            "\n".join(raws),
            time.perf_counter() - started,
            sum(g.generated_tokens for g in generated),
            stats.forward_calls,
            stats.drafted_tokens,
            stats.accepted_tokens,
            len(windows),
        )

    @staticmethod
    def _window_prediction(text: str, raw: str, schema: LabelSchema) -> DocumentPrediction:
        pairs, absent = split_absent(text, parse_struct(raw, schema), lambda pair: pair[1])
        spans = ground(text, pairs, schema.language)
        mentions = tuple(
            PredictedMention(label, 0, mention, None, *(span or (None, None)))
            for (label, mention), span in zip(pairs, spans)
        )
        return DocumentPrediction(
            text, mentions, (), absent=tuple(PredictedMention(label, 0, mention, None) for label, mention in absent)
        )
