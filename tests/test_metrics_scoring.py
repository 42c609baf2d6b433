import json
import math

import pytest
from conftest import EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from official_reference import official_dedup, official_micro_macro

from padellm_ner.core import scores_table, set_scores, span_scores
from padellm_ner.core.scoring import score_records
from padellm_ner.data import read_corpus, read_padellm_results


def test_set_metric_counts_repeated_mentions_once():
    scores = set_scores([({"MISC": ["Syrian", "Syrian"]}, {"MISC": ["Syrian", "Syrian"]})])
    assert (scores.total.tp, scores.total.fp, scores.total.fn) == (1, 0, 0)


def test_set_metric_by_hand():
    pairs = [
        ({"PER": ["A", "B"], "LOC": ["C"]}, {"PER": ["A"], "LOC": ["C", "D"]}),
        ({"ORG": ["E"]}, {}),
    ]
    s = set_scores(pairs)
    assert (s.total.tp, s.total.fp, s.total.fn) == (2, 2, 1)
    assert math.isclose(s.micro_f1, 2 * 2 / (2 * 2 + 2 + 1))
    # per label: PER p=1/2 r=1 f=2/3; LOC p=1 r=1/2 f=2/3; ORG f=0 -> macro 4/9
    assert math.isclose(s.macro_f1, 4 / 9)
    assert s.to_json()["per_label"]["ORG"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "tp": 0,
        "fp": 1,
        "fn": 0,
        "support": 0,
    }


def test_set_scores_by_gold_group_size():
    line_up = [f"P{i}" for i in range(7)]
    pairs = [
        ({"PER": line_up[:3], "LOC": ["Oslo"]}, {"PER": line_up}),  # a list of 7, three found; a spurious LOC
        ({"ORG": ["UN"], "PER": ["Ann", "Bo"]}, {"ORG": ["UN"], "PER": ["Ann", "Bo", "Cy"]}),
        ({"MISC": ["Dutch", "Dutch"]}, {"MISC": ["Dutch", "Dutch"]}),  # repeats count once, as everywhere
    ]
    s = set_scores(pairs)
    groups = {size: (g.tp, g.fp, g.fn) for size, g in s.by_group_size.items()}
    assert groups == {"5+": (3, 0, 4), "0": (0, 1, 0), "1": (2, 0, 0), "3": (2, 0, 1)}
    assert sum(g.tp for g in s.by_group_size.values()) == s.total.tp
    assert sum(g.fn for g in s.by_group_size.values()) == s.total.fn
    assert list(s.to_json()["by_gold_group_size"]) == ["0", "1", "3", "5+"]
    assert "1: 100.0 (0 missed), 3: 66.7 (1 missed), 5+: 42.9 (4 missed)" in scores_table(s)
    assert "by_gold_group_size" not in span_scores([([(0, 2, "PER")], [(0, 2, "PER")])]).to_json()


def test_span_metric_is_strict_and_counts_unplaced_predictions():
    predicted = [(0, 5, "LOC"), (6, 9, "PER"), (None, None, "ORG")]
    gold = [(0, 5, "LOC"), (6, 10, "PER")]
    s = span_scores([(predicted, gold)])
    assert (s.total.tp, s.total.fp, s.total.fn) == (1, 2, 1)
    assert s.per_label["ORG"].fp == 1


def test_bundled_results_file_matches_the_hand_count():
    # examples/sample_results.json, counted by hand: before de-duplication TP 13, FP 4, FN 1;
    # keep-max removes LOC:Siemens, MISC:Brazil (FPs) and ORG:United Nations (a TP, since LOC's 0.61 > 0.45).
    records = read_padellm_results((EXAMPLES / "sample_results.json").read_text())
    none = score_records(records, dedup="none")
    assert (none.total.tp, none.total.fp, none.total.fn) == (13, 4, 1)
    assert math.isclose(none.micro_f1, 26 / 31)
    keep = score_records(records, dedup="keep-max")
    assert (keep.total.tp, keep.total.fp, keep.total.fn) == (12, 2, 2)
    assert math.isclose(keep.micro_f1, 24 / 28)
    reverse = score_records(records, dedup="reverse")
    assert reverse.micro_f1 < keep.micro_f1


def test_bundled_results_match_the_official_scorer():
    rows = json.loads((EXAMPLES / "sample_results.json").read_text())
    records = read_padellm_results(json.dumps(rows))
    for policy, official_rows in (("none", rows), ("keep-max", official_dedup(rows))):
        micro, macro = official_micro_macro(official_rows)
        ours = score_records(records, dedup=policy)
        assert abs(ours.micro_f1 - micro) < 1e-4 and abs(ours.macro_f1 - macro) < 1e-4


label = st.sampled_from(["ORG", "MISC", "PER", "LOC"])
mention = st.sampled_from(["Japan", "Syria", "Asian Cup", "FIFA", "Uzbek"])
row = st.fixed_dictionaries(
    {
        "pred": st.dictionaries(label, st.lists(st.tuples(mention, st.floats(0, 1)).map(list), max_size=3), max_size=4),
        "gt": st.dictionaries(label, st.lists(mention, max_size=3), max_size=4),
    }
)


@settings(max_examples=200)
@given(st.lists(row, min_size=1, max_size=6))
def test_random_results_match_the_official_scorer(rows):
    rows = [{"id": i, "texts": "", **r} for i, r in enumerate(rows)]
    records = read_padellm_results(json.dumps(rows))
    for policy, official_rows in (("none", rows), ("keep-max", official_dedup(rows))):
        micro, macro = official_micro_macro(official_rows)
        ours = score_records(records, dedup=policy)
        assert abs(ours.micro_f1 - micro) < 1e-9
        assert abs(ours.macro_f1 - macro) < 1e-9


def test_span_scoring_grounds_results_against_gold_offsets():
    records = read_padellm_results((EXAMPLES / "sample_results.json").read_text())
    gold = read_corpus(EXAMPLES / "sample.conll").documents
    s = score_records(records, gold, dedup="keep-max", metric="span")
    # as the set metric, plus the second "Geneva" of result 4, which has no second occurrence to map to
    assert (s.total.tp, s.total.fp, s.total.fn) == (12, 3, 2)


def test_span_metric_needs_gold_offsets():
    records = read_padellm_results((EXAMPLES / "sample_results.json").read_text())
    with pytest.raises(ValueError, match="gold character offsets"):
        score_records(records, metric="span")


def test_predictions_are_paired_with_gold_by_id_or_position():
    from padellm_ner.core.scoring import PredictionRecord, pair_with_gold

    gold = read_corpus(EXAMPLES / "sample.conll").documents
    by_id = [PredictionRecord(gold[2].id, "", [])]
    assert pair_with_gold(by_id, gold)[0] is gold[2]
    wrong = [PredictionRecord(str(i), "other text", []) for i in range(len(gold))]
    with pytest.raises(ValueError, match="another text"):
        pair_with_gold(wrong, gold)


def test_predictions_without_probabilities_score_as_written():
    from padellm_ner.data.predictions import read_prediction_jsonl, write_padellm_results

    line = {
        "id": "d1",
        "text": "Nokia sued Nokia Oyj .",
        "entities": [
            {"label": "ORG", "text": "Nokia"},
            {"label": "LOC", "text": "Nokia"},
            {"label": "ORG", "text": "Nokia Oyj", "probability": 0.7},
        ],
    }
    records = read_prediction_jsonl(json.dumps(line))
    assert [m.probability for m in records[0].mentions] == [None, None, 0.7]
    gold = {"ORG": ["Nokia", "Nokia Oyj"], "LOC": []}
    records[0].gold, records[0].labels = gold, ["ORG", "LOC"]
    kept = score_records(records, dedup="keep-max")
    assert (kept.total.tp, kept.total.fp, kept.total.fn) == (2, 1, 0)  # the LOC duplicate is not resolved away
    # and the official results format carries the missing probability as null, both ways
    again = read_padellm_results(write_padellm_results(records))
    assert sorted((m.label, m.text, m.probability or 0) for m in again[0].mentions) == [
        ("LOC", "Nokia", 0),
        ("ORG", "Nokia", 0),
        ("ORG", "Nokia Oyj", 0.7),
    ]
    assert {m.text: m.probability for m in again[0].mentions}["Nokia"] is None


# --- bootstrap intervals (padellm_ner.core.bootstrap) ----------------------------------------------------------


def test_per_document_counts_add_up_to_the_totals():
    pairs = [({"PER": ["A", "B"]}, {"PER": ["A"]}), ({}, {"LOC": ["C"]}), ({"ORG": ["E"]}, {"ORG": ["E"]})]
    s = set_scores(pairs)
    assert s.per_document == [(1, 1, 0), (0, 0, 1), (1, 0, 0)]
    spans = span_scores([([(0, 2, "PER"), None], [(0, 2, "PER")]), ([], [(3, 5, "LOC")])])
    assert spans.per_document == [(1, 1, 0), (0, 0, 1)]  # an unplaced prediction counts in its document
    for scores in (s, spans):
        assert tuple(map(sum, zip(*scores.per_document))) == scores.total.counts()


def test_interval_brackets_the_score_and_narrows_with_more_documents():
    from padellm_ner.core.bootstrap import micro_f1_interval

    documents = [(3, 1, 0), (0, 2, 2), (5, 0, 1), (1, 1, 1), (4, 0, 0), (0, 1, 3)] * 5
    small = micro_f1_interval(documents, resamples=500, seed=1)
    tp, fp, fn = map(sum, zip(*documents))
    assert small.estimate == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert small.low < small.estimate < small.high
    assert small == micro_f1_interval(documents, resamples=500, seed=1)  # seeded: the same interval
    large = micro_f1_interval(documents * 16, resamples=500, seed=1)
    assert large.high - large.low < (small.high - small.low) / 2  # about 1/sqrt(16) as wide
    same = micro_f1_interval([(2, 1, 1)] * 40, resamples=200)
    assert same.low == same.high == same.estimate == pytest.approx(2 / 3)  # nothing varies between documents


def test_paired_comparison_sees_a_consistent_gain_that_the_two_intervals_hide():
    from padellm_ner.core.bootstrap import micro_f1_interval, paired_comparison

    # B varies a lot between documents; A is B with one more true positive (one fewer miss) in every fifth one
    b = [(tp, fp, fn) for tp, fp, fn in [(9, 1, 2), (1, 3, 4), (6, 0, 0), (2, 2, 5), (7, 1, 1)] * 20]
    a = [(tp + 1, fp, fn - 1) if i % 5 == 0 else (tp, fp, fn) for i, (tp, fp, fn) in enumerate(b)]
    interval_a, interval_b = micro_f1_interval(a, seed=3), micro_f1_interval(b, seed=3)
    assert interval_a.low < interval_b.high  # alone, the two intervals overlap
    paired = paired_comparison(a, b, seed=3)
    assert paired.difference.estimate == pytest.approx(interval_a.estimate - interval_b.estimate)
    assert 0 < paired.difference.low <= paired.difference.high and paired.a_better_share > 0.99
    tie = paired_comparison(b, b, resamples=100)
    assert (tie.difference.low, tie.difference.high, tie.a_better_share) == (0.0, 0.0, 0.0)


def test_bootstrap_rejects_what_it_cannot_do():
    from padellm_ner.core.bootstrap import micro_f1_interval, paired_comparison

    with pytest.raises(ValueError, match="at least one document"):
        micro_f1_interval([])
    with pytest.raises(ValueError, match="resamples"):
        micro_f1_interval([(1, 0, 0)], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        micro_f1_interval([(1, 0, 0)], confidence=1.0)
    with pytest.raises(ValueError, match="same documents"):
        paired_comparison([(1, 0, 0)], [(1, 0, 0), (0, 1, 0)])
