from hypothesis import given
from hypothesis import strategies as st

from padellm_ner.core import dedup_mask

ITEMS = [("LOC", "Italy", 0.99), ("MISC", "Italy", 0.61), ("MISC", "Euro 96", 0.9), ("PER", "Italy", 0.2)]


def test_keep_max_keeps_the_most_probable_label_only():
    assert dedup_mask(ITEMS, "keep-max") == [True, False, True, False]


def test_reverse_removes_the_most_probable_label():
    assert dedup_mask(ITEMS, "reverse") == [False, True, True, True]


def test_none_keeps_everything():
    assert dedup_mask(ITEMS, "none") == [True] * 4


def test_repeats_under_one_label_are_not_duplicates():
    items = [("MISC", "Syrian", 0.9), ("MISC", "Syrian", 0.8)]
    assert dedup_mask(items, "keep-max") == [True, True]


def test_all_instances_under_the_winning_label_survive():
    items = [("LOC", "Geneva", 0.5), ("ORG", "Geneva", 0.7), ("ORG", "Geneva", 0.4)]
    assert dedup_mask(items, "keep-max") == [False, True, True]


def test_ties_go_to_the_label_seen_first():
    items = [("ORG", "Nokia", 0.8), ("LOC", "Nokia", 0.8)]
    assert dedup_mask(items, "keep-max") == [True, False]


items_strategy = st.lists(
    st.tuples(
        st.sampled_from(["ORG", "MISC", "PER", "LOC"]),
        st.sampled_from(["a", "b", "c", "d e"]),
        st.floats(min_value=0, max_value=1),
    ),
    max_size=12,
)


@given(items_strategy)
def test_keep_max_properties(items):
    keep = dedup_mask(items, "keep-max")
    kept = [item for item, k in zip(items, keep) if k]
    for text in {t for _, t, _ in items}:
        labels = {label for label, t, _ in kept if t == text}
        assert len(labels) == 1  # every string survives, under exactly one label
        best = max(p for _, t, p in items if t == text)
        assert any(p == best for _, t, p in kept if t == text)
    assert dedup_mask(items, "none") == [True] * len(items)


@given(items_strategy)
def test_reverse_is_the_complement_of_keep_max_on_duplicates(items):
    keep_max, reverse = dedup_mask(items, "keep-max"), dedup_mask(items, "reverse")
    for (_label, text, _), a, b in zip(items, keep_max, reverse):
        duplicated = len({lab for lab, t, _ in items if t == text}) > 1
        assert (a != b) if duplicated else (a and b)


def test_a_duplicate_without_probabilities_is_left_whole():
    # AutoReg_Struct writes one structured sequence and gives no probability per mention: a tie of placeholder
    # probabilities would otherwise decide by order, which `eval` of that method never does.
    items = [("ORG", "Nokia", None), ("LOC", "Nokia", None), ("PER", "Ann", 0.9), ("LOC", "Ann", 0.4)]
    for policy in ("keep-max", "reverse"):
        assert dedup_mask(items, policy)[:2] == [True, True]
    assert dedup_mask(items, "keep-max")[2:] == [True, False]
    assert dedup_mask([("ORG", "Nokia", None), ("LOC", "Nokia", 0.8)], "keep-max") == [True, True]
