"""Prompt-lookup drafts (workers.engine.lookup) on hand-made token ids: what is copied, from where, how much."""

from workers.engine.lookup import MAX_NGRAM, PromptLookup, lookup_keys

# token id -> text; 1 and 11 spell the same word with and without a leading space, 9 is a newline (a stop)
TEXTS = [
    "<s>",
    " Japan",
    " began",
    " the",
    " defence",
    " of",
    "Japan",
    " Asian",
    " Cup",
    "\n",
    "  ",
    " Syria",
    " ,",
    " .",
]
KEYS = lookup_keys(TEXTS)
STOP = frozenset({9})


def test_keys_join_tokens_that_differ_only_by_leading_spaces():
    assert KEYS[6] == KEYS[1] == 1  # "Japan" and " Japan"
    assert KEYS[2] == 2 and KEYS[11] == 11
    assert KEYS[9] == 9 and KEYS[10] == 10  # tokens that spell only whitespace match only themselves


def test_a_mention_start_without_its_space_drafts_what_follows_in_the_document():
    lookup = PromptLookup([0, 1, 2, 3, 4, 5, 7, 8, 12, 13], KEYS, max_tokens=3)
    assert lookup.draft([6], limit=10, stop_ids=STOP) == [2, 3, 4]  # after "Japan": " began the defence"
    assert lookup.draft([7], limit=10, stop_ids=STOP) == [8, 12, 13]  # after " Asian": " Cup , ."
    assert lookup.draft([7], limit=1, stop_ids=STOP) == [8]  # the caller's token budget bounds the draft
    assert lookup.draft([11], limit=10, stop_ids=STOP) == []  # " Syria" is not in this prompt
    assert lookup.draft([], limit=10, stop_ids=STOP) == []
    assert PromptLookup([0, 1, 2], KEYS, max_tokens=0).draft([6], limit=10, stop_ids=STOP) == []


def test_the_longest_ngram_wins_and_its_first_occurrence():
    # " the" occurs twice; after " of the" only the second occurrence fits the 2-gram
    prompt = [3, 4, 5, 3, 7, 8]  # " the defence of the Asian Cup"
    lookup = PromptLookup(prompt, KEYS, max_tokens=2)
    assert lookup.draft([5, 3], limit=5, stop_ids=STOP) == [7, 8]
    assert lookup.draft([3], limit=5, stop_ids=STOP) == [4, 5]  # a 1-gram: its first occurrence
    assert MAX_NGRAM >= 2


def test_a_draft_ends_before_a_stop_token_and_may_come_from_the_output_so_far():
    lookup = PromptLookup([0, 1, 2, 9, 3], KEYS, max_tokens=4)
    assert lookup.draft([6], limit=5, stop_ids=STOP) == [2]  # " began", then the newline: the model decides
    assert lookup.draft([6, 2], limit=5, stop_ids=STOP) == []  # after " Japan began": only the stop
    repeated = PromptLookup([0], KEYS, max_tokens=4)  # structure the output repeats, as AutoReg_Struct's does
    assert repeated.draft([7, 8, 12, 7], limit=5, stop_ids=STOP) == [8, 12, 7]
