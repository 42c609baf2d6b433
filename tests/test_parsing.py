import pytest
from hypothesis import given
from hypothesis import strategies as st

from padellm_ner.core import CountStatus, parse_count, parse_mention


@pytest.mark.parametrize(
    "raw, value, status",
    [
        ("", 0, CountStatus.EMPTY),
        ("\n", 0, CountStatus.EMPTY),
        ("</s>", 0, CountStatus.EMPTY),
        ("0", 0, CountStatus.OK),
        ("3", 3, CountStatus.OK),
        ("3\n<mention 1>", 3, CountStatus.OK),
        (" 12 ", 12, CountStatus.OK),
        ("2</s>", 2, CountStatus.OK),
        ("4a", 4, CountStatus.LEADING_DIGIT),
        ("two", 0, CountStatus.INVALID),
        ("-1", 0, CountStatus.INVALID),
        ("３", 0, CountStatus.INVALID),  # a full-width digit is not taken for a number
        ("500", 30, CountStatus.CAPPED),
    ],
)
def test_parse_count(raw, value, status):
    parsed = parse_count(raw, max_count=30, stop_strings=("</s>",))
    assert (parsed.value, parsed.status) == (value, status)
    assert parsed.raw == raw


def test_cap_is_configurable():
    assert parse_count("12", max_count=10).value == 10
    assert parse_count("12", max_count=100).value == 12
    with pytest.raises(ValueError):
        parse_count("1", max_count=-1)


@given(st.text(max_size=20), st.integers(min_value=0, max_value=50))
def test_count_is_always_within_the_cap(raw, cap):
    parsed = parse_count(raw, max_count=cap)
    assert 0 <= parsed.value <= cap
    assert isinstance(parsed.status, CountStatus)


def test_parse_mention():
    assert parse_mention("Japan") == "Japan"
    assert parse_mention(" Japan \n<mention 2>") == "Japan"
    assert parse_mention("Asian Cup<|endoftext|>", ("<|endoftext|>",)) == "Asian Cup"
    assert parse_mention("") is None
    assert parse_mention("\n") is None
