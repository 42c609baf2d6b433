"""Continuous batching in the embedded worker, with the real model: rows that join a running batch, calls admitted
under a token budget, Mention calls that continue their count's sequence. Each decodes as it would alone."""

import asyncio

import pytest

from padellm_ner.core import template_for
from workers.backends.embedded import EmbeddedBackend
from workers.engine.decoder import DecodeBatch, DecodeStats, _kv, encode_prefix, greedy_decode, prefill_on_caches
from workers.engine.padellm import PadellmEngine

TEXTS = [
    "EU rejects German call to boycott British lamb .",
    "BRUSSELS 1996-08-22",
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C match .",
    "Germany 's representative to the European Union 's veterinary committee Werner Zwingmann said on Wednesday .",
]
LABELS = ("ORG", "MISC", "PER", "LOC")


def _tokens(generated):
    return [(g.token_ids, g.finish, round(g.logprob, 2)) for g in generated]


def _run(batch: DecodeBatch, model, steps: int | None = None, **forward) -> dict:
    """Decode `batch` for `steps` forwards (None: to its end); the finished rows' results by owner."""
    done = {}
    while len(batch) and steps != 0:
        for finished in batch.choose():
            done[finished.owner] = finished.generated
        if len(batch):
            batch.forward(model, DecodeStats(), **forward)
            steps = None if steps is None else steps - 1
    return done


def test_rows_that_join_a_running_batch_decode_as_alone(base_engine_model):
    """Mention branches of one window decode two steps, then the branches of another window (a prefix of another
    length) join them: every row's tokens are those it decodes alone."""
    m = base_engine_model
    template = template_for("en")
    stop = frozenset({m.eos_id})  # newlines go on: rows that run long enough to meet the joining ones
    first = [m.encode(template.label_branch(w) + template.mention_suffix(2, k)) for w, k in (("PER", 1), ("LOC", 2))]
    second = [
        m.encode(template.label_branch("ORG") + template.mention_suffix(1, 1)),
        m.encode(template.label_branch("LOC")),
    ]
    prefixes = [m.encode(template.shared_prefix(text), special=True) for text in (TEXTS[0], TEXTS[2])]
    assert len(prefixes[0]) != len(prefixes[1])
    alone = [
        greedy_decode(
            m.model,
            branches,
            prefix_ids=prefix,
            prefix_cache=encode_prefix(m.model, prefix, m.device),
            stop_ids=stop,
            max_new_tokens=8,
            pad_id=m.pad_id,
        )
        for prefix, branches in zip(prefixes, (first, second))
    ]

    def batch(prefix, branches, owners):
        prefill = prefill_on_caches(
            m.model, [(len(prefix), encode_prefix(m.model, prefix, m.device), branches)], pad_id=m.pad_id
        )
        return DecodeBatch(prefill, owners, 8, stop, m.model.config)

    running = batch(prefixes[0], first, ["a0", "a1"])
    done = _run(running, m.model, steps=2)
    assert len(running) == 2, "both rows still decode when the others join"
    running.merge(batch(prefixes[1], second, ["b0", "b1"]))
    assert not any(keys.requires_grad for keys, _ in _kv(running.cache)), "no autograd graph holds the cache"
    done.update(_run(running, m.model))
    assert _tokens([done["a0"], done["a1"]]) == _tokens(alone[0])
    assert _tokens([done["b0"], done["b1"]]) == _tokens(alone[1])


def test_drafts_are_shortened_to_the_forward_token_budget(serving_engine_model):
    """Prompt-lookup drafts fit `max_tokens` per forward: fewer under a budget, none under a budget of one token a
    forward; the tokens stay the greedy ones."""
    m = serving_engine_model
    template = template_for("en")
    stop = frozenset({m.eos_id, *m.newline_ids})
    text = TEXTS[3]
    prefix = m.encode(template.shared_prefix(text), special=True)
    branches = [m.encode(template.label_branch(w) + template.mention_suffix(1, 1)) for w in ("PER", "ORG", "LOC")]
    lookup = PadellmEngine(m, lookup_tokens=4).lookup_for(prefix, text)
    results = {}
    for budget in (None, 6, 1):
        prefill = prefill_on_caches(
            m.model, [(len(prefix), encode_prefix(m.model, prefix, m.device), branches)], pad_id=m.pad_id
        )
        batch = DecodeBatch(prefill, [0, 1, 2], 12, stop, m.model.config, lookup)
        stats = DecodeStats()
        done = {}
        while len(batch):
            for finished in batch.choose():
                done[finished.owner] = finished.generated
            if len(batch):
                batch.forward(m.model, stats, max_tokens=budget)
        results[budget] = (_tokens([done[i] for i in range(3)]), stats.drafted_tokens)
    assert results[None][1] > results[6][1] > results[1][1] == 0
    assert [t[:2] for t in results[None][0]] == [t[:2] for t in results[6][0]] == [t[:2] for t in results[1][0]]


async def test_calls_admitted_under_a_token_budget_join_the_running_batch_and_decode_as_alone(serving_engine_model):
    """The Count calls of four documents, queued together, admitted one call per prefill (a budget of one token):
    one engine session, every call joining the batch its predecessors decode, each answer the one it gets alone."""
    alone = {}
    for text in TEXTS:
        async with EmbeddedBackend(serving_engine_model) as backend:
            for label in LABELS:
                alone[(text, label)] = (await backend.count("d", text, "conll03", label)).result
    backend = EmbeddedBackend(serving_engine_model, max_prefill_tokens=1, batch_window_ms=50)
    async with backend:
        outcomes = await asyncio.gather(
            *(backend.count(f"d{i}", text, "conll03", label) for i, text in enumerate(TEXTS) for label in LABELS)
        )
    together = {
        (text, label): o.result for (text, label), o in zip(((t, lb) for t in TEXTS for lb in LABELS), outcomes)
    }
    assert backend._batcher.sessions == 1 and backend.batches == len(TEXTS) * len(LABELS)
    for key, result in alone.items():
        assert (together[key].raw, together[key].finish) == (result.raw, result.finish), key
        assert together[key].logprob == pytest.approx(result.logprob, abs=1e-3)


async def test_a_mention_continues_the_sequence_its_count_decoded(serving_engine_model):
    """After a count of one or more, its label's Mention calls read only what follows the count on the count's own
    KV: fewer tokens read, the same mentions as when they read their whole branch."""
    runs = {}
    for continue_counts in (False, True):
        backend = EmbeddedBackend(serving_engine_model, continue_counts=continue_counts)
        async with backend:
            counts = await asyncio.gather(*(backend.count("d", TEXTS[2], "conll03", label) for label in LABELS))
            found = [
                (c.result.label, int(c.result.raw)) for c in counts if c.result.raw.isdigit() and c.result.raw != "0"
            ]
            assert found, "the sentence names something"
            before = backend.stats.prefill_tokens
            mentions = await asyncio.gather(
                *(backend.mention("d", TEXTS[2], "conll03", label, n, k) for label, n in found for k in range(1, n + 1))
            )
            runs[continue_counts] = (
                [(m.result.label, m.result.k, m.result.raw, m.result.finish) for m in mentions],
                [m.result.logprob for m in mentions],
                backend.stats.prefill_tokens - before,
                len(backend._continuations),
            )
    (plain, plain_logprobs, plain_read, kept), (continued, logprobs, read, continuations) = runs[False], runs[True]
    assert kept == 0 and continuations == len(found)
    assert continued == plain
    assert logprobs == pytest.approx(plain_logprobs, abs=1e-3)
    assert read < plain_read, f"{read} tokens read on the counts' KV, {plain_read} on the window's"


@pytest.mark.parametrize("prefix_cache_tokens, read_again", [(None, False), (1, True)])
async def test_the_prefix_cache_keeps_windows_within_its_token_budget(
    serving_engine_model, prefix_cache_tokens, read_again
):
    """A window's Count call after another window's: read from the prefix cache while the budget holds both, read
    again once a budget of one token kept only the newest window (and the same count either way)."""
    sized = {} if prefix_cache_tokens is None else {"prefix_cache_tokens": prefix_cache_tokens}
    backend = EmbeddedBackend(serving_engine_model, **sized)
    async with backend:
        first = (await backend.count("a", TEXTS[0], "conll03", "ORG")).result
        await backend.count("b", TEXTS[2], "conll03", "ORG")
        before = backend.stats.prefill_tokens
        again = (await backend.count("a", TEXTS[0], "conll03", "MISC")).result
        read = backend.stats.prefill_tokens - before
        cached = [text for _, text in backend._prefixes]
        assert (await backend.count("a", TEXTS[0], "conll03", "ORG")).result.raw == first.raw
    window = len(serving_engine_model.encode(template_for("en").shared_prefix(TEXTS[0]), special=True))
    assert again.raw.isdigit()
    if read_again:
        assert read > window and cached == [TEXTS[0]], (read, cached)
    else:
        assert read < window and sorted(cached) == sorted([TEXTS[0], TEXTS[2]]), (read, cached)


def test_the_worker_flag_sizes_the_prefix_cache():
    import argparse

    from workers.config import WorkerArgs

    parser = argparse.ArgumentParser()
    WorkerArgs.add_cli_args(parser)
    assert WorkerArgs.from_cli_args(parser.parse_args([])).prefix_cache_tokens == 32768
    assert WorkerArgs.from_cli_args(parser.parse_args(["--prefix-cache-tokens", "4096"])).prefix_cache_tokens == 4096
    with pytest.raises(SystemExit):
        parser.parse_args(["--prefix-cache-tokens", "0"])
