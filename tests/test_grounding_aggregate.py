import math

from padellm_ner.core import CountResult, CountStatus, MentionResult, aggregate, ground, occurrences

TEXT = "Syria beat the Syrian side ; Syria and USA , not US , won"


def test_kth_prediction_maps_to_kth_occurrence():
    spans = ground(TEXT, [("LOC", "Syria"), ("LOC", "Syria")], "en")
    assert spans == [(0, 5), (29, 34)]


def test_word_boundaries_are_preferred():
    # "Syria" inside "Syrian" is not an occurrence while whole-word ones exist; "US" is not found in "USA".
    assert occurrences(TEXT, "Syria", "en") == [0, 29]
    assert ground(TEXT, [("LOC", "US")], "en") == [(TEXT.index(" US ") + 1, TEXT.index(" US ") + 3)]


def test_mention_not_in_text_has_no_span():
    assert ground(TEXT, [("LOC", "Japan"), ("LOC", "Syria"), ("LOC", "Syria"), ("LOC", "Syria")], "en") == [
        None,
        (0, 5),
        (29, 34),
        None,  # a third "Syria" is not placed inside "Syrian"
    ]
    assert ground("the Syrians", [("MISC", "Syrian")], "en") == [(4, 10)]  # no whole word: inside one


def test_chinese_has_no_word_boundaries():
    assert ground("我在北京大学", [("ORG", "北京大学"), ("LOC", "北京")], "zh") == [(2, 6), (2, 4)]


def test_labels_ground_independently_and_may_nest():
    text = "the IL-2 gene promoter"
    spans = ground(text, [("DNA", "IL-2 gene promoter"), ("protein", "IL-2")], "en")
    assert spans == [(4, 22), (4, 8)]


def test_aggregate_end_to_end():
    text = "Italy won Euro 96 in Italy"
    counts = [
        CountResult("ORG", "0", math.log(0.9)),
        CountResult("MISC", "2", math.log(0.8)),
        CountResult("PER", "", 0.0),
        CountResult("LOC", "2\n", math.log(0.95)),
    ]
    mentions = [
        MentionResult("MISC", 1, "Euro 96", math.log(0.9), 3),
        MentionResult("MISC", 2, "Italy", math.log(0.61), 2),
        MentionResult("LOC", 1, "Italy", math.log(0.99), 2),
        MentionResult("LOC", 2, "Italy\n", math.log(0.97), 2),
    ]
    labels = ["ORG", "MISC", "PER", "LOC"]
    pred = aggregate(text, labels, counts, mentions, language="en")
    assert [(m.label, m.k, m.text, m.start, m.end) for m in pred.mentions] == [
        ("MISC", 1, "Euro 96", 10, 17),
        ("LOC", 1, "Italy", 0, 5),
        ("LOC", 2, "Italy", 21, 26),
    ]
    assert [(m.label, m.text) for m in pred.removed_by_dedup] == [("MISC", "Italy")]
    assert {c.label: (c.count, c.status) for c in pred.counts} == {
        "ORG": (0, CountStatus.OK),
        "MISC": (2, CountStatus.OK),
        "PER": (0, CountStatus.EMPTY),
        "LOC": (2, CountStatus.OK),
    }
    assert math.isclose(pred.mentions[1].probability, 0.99)
    assert pred.ungrounded == 0 and pred.empty_mentions == 0

    kept_all = aggregate(text, labels, counts, mentions, language="en", dedup="none")
    assert len(kept_all.mentions) == 4 and not kept_all.removed_by_dedup


def test_aggregate_counts_empty_and_ungrounded_mentions():
    pred = aggregate(
        "Nokia rose",
        ["ORG"],
        [CountResult("ORG", "2")],
        [MentionResult("ORG", 1, ""), MentionResult("ORG", 2, "Nokia Oyj")],
        language="en",
    )
    # "Nokia Oyj" is not in the text: set aside (counted as ungrounded), not returned
    assert pred.empty_mentions == 1 and pred.ungrounded == 1 and pred.mentions == ()
    assert [(m.label, m.text) for m in pred.absent] == [("ORG", "Nokia Oyj")]
    # a string the text holds fewer times than it was predicted: kept, the extra one without a span
    twice = aggregate(
        "Nokia rose",
        ["ORG"],
        [CountResult("ORG", "2")],
        [MentionResult("ORG", 1, "Nokia"), MentionResult("ORG", 2, "Nokia")],
        language="en",
        dedup="none",
    )
    assert [(m.text, m.start) for m in twice.mentions] == [("Nokia", 0), ("Nokia", None)] and twice.ungrounded == 1


def test_a_string_not_in_the_text_never_displaces_a_real_mention_in_dedup():
    pred = aggregate(
        "Nokia rose",
        ["ORG", "PER"],
        [CountResult("ORG", "1"), CountResult("PER", "1")],
        [MentionResult("ORG", 1, "Nokia", math.log(0.6)), MentionResult("PER", 1, "Nokla", math.log(0.9))],
        language="en",
    )
    assert [(m.label, m.text) for m in pred.mentions] == [("ORG", "Nokia")]
    assert [(m.label, m.text) for m in pred.absent] == [("PER", "Nokla")]


def test_aggregate_rejects_labels_not_asked_for():
    import pytest

    with pytest.raises(ValueError, match="not asked for"):
        aggregate("x", ["ORG"], [CountResult("PER", "1")], [], language="en")
