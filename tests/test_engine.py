"""The embedded engine against plain per-sequence `generate` on the same (real) model."""

import itertools

import pytest
import torch

from padellm_ner.core import get_schema, template_for
from padellm_ner.core.segment import WindowPolicy
from workers.engine.decoder import DecodeStats, decode_tree, encode_prefix, greedy_decode
from workers.engine.lookup import PromptLookup
from workers.engine.padellm import PadellmEngine

TEXTS = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C match .",
]


def reference(model, ids, stop_ids, max_new):
    """Plain transformers generate, one sequence at a time: tokens and their log-probabilities."""
    out = model.model.generate(
        torch.tensor([ids]),
        max_new_tokens=max_new,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
        eos_token_id=sorted(stop_ids),
        pad_token_id=model.pad_id,
    )
    new = out.sequences[0, len(ids) :].tolist()
    logprobs = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.scores, new)]
    if new and new[-1] in stop_ids:
        return new[:-1], logprobs[:-1]
    return new, logprobs


@pytest.mark.parametrize("text", TEXTS)
def test_prefix_shared_batches_equal_per_sequence_generate(base_engine_model, text):
    m = base_engine_model
    template, schema = template_for("en"), get_schema("conll03")
    stop = frozenset({m.eos_id, *m.newline_ids})
    prefix = m.encode(template.shared_prefix(text), special=True)
    # count branches and mention branches of varying lengths, so padding and early exit both happen
    branches = [m.encode(template.label_branch(label)) for label in schema.labels]
    branches += [m.encode(template.label_branch("PER") + template.mention_suffix(2, k)) for k in (1, 2)]
    expected = [reference(m, prefix + branch, stop, 6) for branch in branches]
    # the prefix read with the branches in one forward (tree), the branches on a known prefix cache, and
    # every prompt on its own
    tree, prefix_cache = decode_tree(m.model, prefix, branches, stop_ids=stop, max_new_tokens=6)
    on_cache = greedy_decode(
        m.model,
        branches,
        prefix_ids=prefix,
        prefix_cache=encode_prefix(m.model, prefix, m.device),
        stop_ids=stop,
        max_new_tokens=6,
        pad_id=m.pad_id,
    )
    alone = greedy_decode(m.model, [prefix + b for b in branches], stop_ids=stop, max_new_tokens=6, pad_id=m.pad_id)
    # and each of them with prompt-lookup drafts copied from the document
    lookup, known = PromptLookup(prefix, m.lookup_keys, 3), encode_prefix(m.model, prefix, m.device)
    drafted = [
        decode_tree(m.model, prefix, branches, stop_ids=stop, max_new_tokens=6, lookup=lookup)[0],
        greedy_decode(
            m.model,
            branches,
            prefix_ids=prefix,
            prefix_cache=known,
            stop_ids=stop,
            max_new_tokens=6,
            pad_id=m.pad_id,
            lookup=lookup,
        ),
        greedy_decode(
            m.model, [prefix + b for b in branches], stop_ids=stop, max_new_tokens=6, pad_id=m.pad_id, lookup=lookup
        ),
    ]
    for got in (tree, on_cache, alone, *drafted):
        for generated, (tokens, logprobs) in zip(got, expected):
            assert generated.token_ids == tokens
            assert generated.logprobs == pytest.approx(logprobs, abs=2e-4)
    # the tree's prefix cache is the prefix's own encoding (its rows never saw a branch)
    alone_prefix = encode_prefix(m.model, prefix, m.device)
    for kept, fresh in zip(prefix_cache.layers, alone_prefix.layers):
        assert torch.allclose(kept.keys, fresh.keys, atol=1e-4) and torch.allclose(kept.values, fresh.values, atol=1e-4)


def test_split_tokenization_equals_whole_prompt_tokenization(base_engine_model):
    m = base_engine_model
    for language, schema_name, text in (("en", "conll03", TEXTS[2]), ("zh", "resume", "常建良，男，1963年出生")):
        template, schema = template_for(language), get_schema(schema_name)
        prefix = m.encode(template.shared_prefix(text), special=True)
        for label in schema.labels:
            word = schema.prompt_word(label)
            assert prefix + m.encode(template.label_branch(word)) == m.encode(
                template.count_prompt(text, word), special=True
            )
            step2 = template.label_branch(word) + template.mention_suffix(3, 2)
            assert prefix + m.encode(step2) == m.encode(template.mention_prompt(text, word, 3, 2), special=True)


def test_engine_modes_agree_and_account_tokens(base_engine_model):
    schema = get_schema("conll03")
    shared = PadellmEngine(base_engine_model, prefix_sharing=True, max_mention_tokens=5).recognize(TEXTS[0], schema)
    alone = PadellmEngine(base_engine_model, prefix_sharing=False, max_mention_tokens=5).recognize(TEXTS[0], schema)
    assert [c.raw for c in shared.counts] == [c.raw for c in alone.counts]
    assert [(m.label, m.k, m.raw) for m in shared.mentions] == [(m.label, m.k, m.raw) for m in alone.mentions]
    # prefix sharing reads far fewer tokens (the untrained model's counts are not digits: the general path)
    assert shared.prefill_tokens < alone.prefill_tokens
    assert [c.label for c in shared.prediction.counts] == list(schema.labels)
    assert shared.tokens_per_sequence > 0


# a 20-name squad: long enough that the shipped model counts 10 or more (two digits, decoded in full); with 14
# names the 2-epoch model said 10 or more but the 4-epoch one says 6
ROSTER = (
    "Squad : Javier Pertile , Paolo Vaccari , Marcello Cuttitta , Ivan Francescato , Leandro Manteri , "
    "Diego Dominguez , Francesco Mazzariol , Alessandro Troncon , Orazio Arancio , Andrea Sgorlon , "
    "Massimo Giovanelli , Carlo Checchinato , Walter Cristofoletto , Franco Properzi Curti , Giambatista Croci , "
    "Julian Gardner , Mark Giacheri , Nicola Mazzucato , Alessandro Moscardi , Cristian Stoica ."
)


WHOLE_TEXT = WindowPolicy(max_tokens=4096)  # every test text as one window: decoding is compared prompt by prompt


def greedy_reference(m, text, schema, max_mention_tokens):
    """Every count, then every (label, k) mention, each its own prompt through plain `generate`."""
    from padellm_ner.core import parse_count

    template, stop = template_for(schema.language), frozenset({m.eos_id, *m.newline_ids})
    counts, mentions = {}, {}
    for label in schema.labels:
        word = schema.prompt_word(label)
        counts[label] = reference(m, m.encode(template.count_prompt(text, word), special=True), stop, 10)
        n = parse_count(m.decode(counts[label][0])).value
        for k in range(1, n + 1):
            prompt = m.encode(template.mention_prompt(text, word, n, k), special=True)
            mentions[(label, k)] = reference(m, prompt, stop, max_mention_tokens)
    return counts, mentions


@pytest.mark.parametrize("text", [TEXTS[0], TEXTS[2], ROSTER])
def test_engine_equals_greedy_decoding_of_every_count_and_mention(serving_engine_model, text):
    """The engine reads a one-digit count's stop token in the forward that starts step 2 instead of decoding it;
    a count it cannot confirm (10 or more: the roster) is decoded in full. Either way every count and mention,
    with its log-probabilities, equals decoding each prompt on its own."""
    m, schema = serving_engine_model, get_schema("conll03")
    counts, mentions = greedy_reference(m, text, schema, 12)
    assert mentions, "the trained model finds entities in every test text"
    forwards = {}
    variants = {
        "one call": {},
        "count then mention": {"one_call": False},
        "no prefix sharing": {"prefix_sharing": False},
    }
    for (name, options), lookup_tokens in itertools.product(variants.items(), (0, 4)):
        engine = PadellmEngine(
            m, max_mention_tokens=12, lookup_tokens=lookup_tokens, window_policy=WHOLE_TEXT, **options
        )
        result = engine.recognize(text, schema)
        assert result.windows == 1
        forwards[name, lookup_tokens] = result.forward_calls
        assert bool(result.drafted_tokens) == bool(lookup_tokens)
        for count in result.counts:
            tokens, logprobs = counts[count.label]
            assert count.raw == m.decode(tokens)
            assert count.logprob == pytest.approx(sum(logprobs), abs=5e-4)
            assert count.generated_tokens == len(tokens) + 1  # the digits and their stop token
        assert sorted((x.label, x.k) for x in result.mentions) == sorted(mentions)
        for mention in result.mentions:
            tokens, logprobs = mentions[(mention.label, mention.k)]
            assert mention.raw == m.decode(tokens)
            assert mention.logprob == pytest.approx(sum(logprobs), abs=5e-4)
    if text == ROSTER:
        assert any(len(m.decode(tokens)) > 1 for tokens, _ in counts.values()), "a count of 10 or more"
    else:  # one-digit counts: their stop tokens are confirmed in step 2's forward, one forward fewer
        for lookup_tokens in (0, 4):
            assert (
                forwards["one call", lookup_tokens]
                == forwards["count then mention", lookup_tokens] - 1
                == forwards["no prefix sharing", lookup_tokens] - 1
            )
    # the mentions are copied from the text: drafts of them save forwards in every mode where a mention has
    # tokens to copy after its first (and never cost one)
    copied = any(len(tokens) > 1 for tokens, _ in mentions.values())
    for name in variants:
        assert forwards[name, 4] < forwards[name, 0] if copied else forwards[name, 4] == forwards[name, 0]


ARTICLE = (
    "SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .\n\nAL-AIN , United Arab Emirates 1996-12-06\n\n"
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C "
    "championship match on Friday .  But China saw their luck desert them in the second match of the group ,"
    "\ncrashing to a surprise 2-0 defeat to newcomers Uzbekistan .\n\n" + ROSTER
)


def test_windows_of_a_document_decode_together_as_each_alone(serving_engine_model):
    """A document's windows are one batch, one row each (rows of different lengths, padded): every window's
    counts and mentions equal that window decoded alone, in every mode, and every entity's offsets are offsets
    into the document as sent (line breaks and double spaces included)."""
    m, schema = serving_engine_model, get_schema("conll03")
    policy = WindowPolicy(max_tokens=64)
    for options in ({}, {"one_call": False}, {"prefix_sharing": False}):
        engine = PadellmEngine(m, max_mention_tokens=12, window_policy=policy, **options)
        result = engine.recognize(ARTICLE, schema)
        windows = engine.plan(ARTICLE, schema).windows
        assert result.windows == len(windows) >= 4
        for window in windows:
            alone = PadellmEngine(m, max_mention_tokens=12, window_policy=WHOLE_TEXT, **options).recognize(
                window.text, schema
            )
            assert alone.windows == 1
            mine = [(c.label, c.raw) for c in result.counts if c.window == window.index]
            assert mine == [(c.label, c.raw) for c in alone.counts]
            got = sorted((x.label, x.k, x.raw) for x in result.mentions if x.window == window.index)
            assert got == sorted((x.label, x.k, x.raw) for x in alone.mentions)
            for x in result.mentions:
                if x.window == window.index:
                    same = next(y for y in alone.mentions if (y.label, y.k) == (x.label, x.k))
                    assert x.logprob == pytest.approx(same.logprob, abs=5e-4)
        assert result.prediction.mentions, "the trained model finds entities in the article"
        for mention in result.prediction.mentions:
            if mention.start is not None:
                assert ARTICLE[mention.start : mention.end] == mention.text
        assert sum(c.count for c in result.prediction.counts) == len([x for x in result.mentions])


def test_drafts_keep_the_token_budget_and_the_greedy_tokens(base_engine_model):
    """A draft never takes a sequence past max_new_tokens, and drafted decoding returns what plain steps do."""
    m = base_engine_model
    stop = frozenset({m.eos_id, *m.newline_ids})
    prompt = m.encode("Repeat exactly: Japan began the defence of their Asian Cup title.\nJapan began", special=True)
    lookup = PromptLookup(prompt, m.lookup_keys, 4)
    for budget in (1, 2, 3, 7):
        plain = greedy_decode(m.model, [prompt], stop_ids=stop, max_new_tokens=budget)[0]
        stats = DecodeStats()
        drafted = greedy_decode(m.model, [prompt], stop_ids=stop, max_new_tokens=budget, lookup=lookup, stats=stats)[0]
        assert len(drafted.token_ids) <= budget
        assert (drafted.token_ids, drafted.finish) == (plain.token_ids, plain.finish)
        assert drafted.logprobs == pytest.approx(plain.logprobs, abs=2e-4)
    assert stats.accepted_tokens > 0, "the base model copies the sentence it was asked to repeat"


@pytest.fixture(scope="module")
def autoreg_model():
    from padellm_ner.config import REPO_ROOT
    from workers.engine.loading import load_engine_model

    folder = REPO_ROOT / "models" / "autoreg-struct-conll03"
    if not (folder / "padellm.json").exists():
        pytest.skip(f"no AutoReg_Struct model at {folder}")
    return load_engine_model(folder, device="cpu", dtype="float32")  # compared with plain greedy decoding


def test_autoreg_struct_with_drafts_writes_the_same_output_in_fewer_forwards(autoreg_model):
    from workers.engine.autoreg import AutoregStructEngine

    schema = get_schema("conll03")
    for text in (TEXTS[2], ROSTER):
        plain = AutoregStructEngine(autoreg_model, lookup_tokens=0).recognize(text, schema)
        drafted = AutoregStructEngine(autoreg_model, lookup_tokens=4).recognize(text, schema)
        assert drafted.raw == plain.raw and drafted.generated_tokens == plain.generated_tokens
        assert drafted.prediction.mentions == plain.prediction.mentions
        assert drafted.forward_calls < plain.forward_calls
        assert drafted.accepted_tokens > 0 and plain.drafted_tokens == 0


def test_a_forest_packed_into_rows_decodes_each_tree_as_alone(base_engine_model, monkeypatch):
    """Trees of different sizes packed several to a row (rows filled unevenly, padded to the longest): every
    branch decodes as its tree decoded alone."""
    from workers.engine import decoder

    m = base_engine_model
    template, stop = template_for("en"), frozenset({m.eos_id, *m.newline_ids})
    prefixes = [m.encode(template.shared_prefix(text), special=True) for text in TEXTS + ["Nokia rose ."]]
    branches = [
        [m.encode(template.label_branch(label)) for label in labels]
        for labels in (["PER", "LOC"], ["ORG"], ["MISC", "PER", "LOC", "ORG"], ["LOC"])
    ]
    alone = [decode_tree(m.model, p, b, stop_ids=stop, max_new_tokens=4)[0] for p, b in zip(prefixes, branches)]
    monkeypatch.setattr(decoder, "ROW_TOKENS", 60)
    together, forest = decoder.decode_forest(
        m.model, prefixes, branches, stop_ids=stop, max_new_tokens=4, pad_id=m.pad_id
    )
    assert forest.rows >= 2 and len({row for row, _, _ in forest.trees}) < len(prefixes), "trees share rows"
    for got, expected in zip(together, alone):
        assert [g.token_ids for g in got] == [g.token_ids for g in expected]
        assert [g.logprob for g in got] == pytest.approx([g.logprob for g in expected], abs=2e-4)
    for tree, prefix in enumerate(prefixes):  # each tree's prefix cache is its own encoding
        fresh = encode_prefix(m.model, prefix, m.device)
        for kept, own in zip(forest.prefix_cache(tree).layers, fresh.layers):
            assert torch.allclose(kept.keys, own.keys, atol=1e-4)


def test_a_decode_no_longer_wanted_stops_at_its_next_step(base_engine_model):
    """`should_stop` (the batcher: every caller gave up, or the worker is stopping) cuts a decode after the first
    token instead of running to max_new_tokens; without it the same branches run on."""
    from workers.engine import decoder

    m = base_engine_model
    template, stop = template_for("en"), frozenset({m.eos_id})  # no newline stop: the branches run on
    prefixes = [m.encode(template.shared_prefix(TEXTS[0]), special=True)]
    branches = [[m.encode(template.label_branch(label)) for label in ("PER", "ORG")]]
    full, _ = decoder.decode_forest(m.model, prefixes, branches, stop_ids=stop, max_new_tokens=8, pad_id=m.pad_id)
    cut, _ = decoder.decode_forest(
        m.model, prefixes, branches, stop_ids=stop, max_new_tokens=8, pad_id=m.pad_id, should_stop=lambda: True
    )
    assert all(len(g.token_ids) > 1 for g in full[0])
    assert all(len(g.token_ids) <= 1 and g.finish == "length" for g in cut[0])
    assert [g.token_ids[:1] for g in cut[0]] == [g.token_ids[:1] for g in full[0]]
