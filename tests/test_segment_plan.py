"""Documents into windows, and the plan of a document's sequences: asks, merge, document offsets."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padellm_ner.core import CountResult, CountStatus, MentionResult, get_schema
from padellm_ner.core.aggregate import FinishReason
from padellm_ner.core.plan import CountAsk, DocumentPlan, MentionAsk
from padellm_ner.core.segment import (
    Window,
    WindowPolicy,
    WindowUnit,
    estimate_tokens,
    sentence_spans,
    split_windows,
)

CONLL = get_schema("conll03")
ARTICLE = (
    "EU rejects German call to boycott British lamb .\n\nPeter Blackburn\n\nBRUSSELS 1996-08-22\n\n"
    "The European Commission said on Thursday it disagreed with German advice to consumers to shun British "
    "lamb until scientists determine whether mad cow disease can be transmitted to sheep .  Germany 's "
    "representative to the European Union 's veterinary committee Werner Zwingmann said on Wednesday\n"
    "consumers should buy sheepmeat from countries other than Britain until the scientific advice was clearer ."
)


def covers(text: str, windows: list[Window]) -> None:
    """Every non-space character of the text in exactly one window, in order, at the offset the window says."""
    seen = [i for w in windows for i, c in zip(w.source, w.text) if not c.isspace()]
    assert seen == [i for i, c in enumerate(text) if not c.isspace()]
    for w in windows:
        assert all(text[i] == c for i, c in zip(w.source, w.text) if not c.isspace())
        assert w.text == w.text.strip() and "  " not in w.text and "\n" not in w.text


def test_a_sentence_is_one_window_unchanged():
    (window,) = split_windows("EU rejects German call to boycott British lamb .", "en")
    assert window.text == "EU rejects German call to boycott British lamb ." and window.start == 0


def test_sentences_pack_up_to_the_budget_and_offsets_point_into_the_document():
    windows = split_windows(ARTICLE, "en", WindowPolicy(64, WindowUnit.PACKED))
    covers(ARTICLE, windows)
    assert len(windows) == 3 and all(estimate_tokens(w.text) <= 64 for w in windows)
    assert windows[0].text == "EU rejects German call to boycott British lamb . Peter Blackburn BRUSSELS 1996-08-22"
    start = windows[2].text.index("Wednesday consumers")  # packed again across the line break, now one space
    s, e = windows[2].document_span(start, start + len("Wednesday consumers"))
    assert ARTICLE[s:e] == "Wednesday\nconsumers"
    one_each = split_windows(ARTICLE, "en", WindowPolicy(64, WindowUnit.SENTENCE))
    assert [w.text for w in one_each][:3] == [
        "EU rejects German call to boycott British lamb .",
        "Peter Blackburn",
        "BRUSSELS 1996-08-22",
    ]
    assert len(one_each) == 6 and one_each[-1].text.startswith("consumers")  # a line break ends a sentence


def test_a_sentence_over_the_budget_is_cut_at_a_clause_and_a_run_by_characters():
    roster = "Squad : " + " , ".join(f"Player{i} Surname{i}" for i in range(40)) + " ."
    windows = split_windows(roster, "en", WindowPolicy(32))
    covers(roster, windows)
    assert len(windows) > 1 and all(estimate_tokens(w.text) <= 32 for w in windows)
    assert all(w.text.endswith((",", ".")) for w in windows), "cuts fall after a comma, not inside a name"
    emoji = "😀" * 100
    windows = split_windows(emoji, "en", WindowPolicy(30))
    covers(emoji, windows)
    assert all(estimate_tokens(w.text) <= 30 for w in windows)


def test_chinese_splits_at_sentence_marks_and_line_breaks():
    text = "张三毕业于北京大学。他现在在上海工作！你好吗？好的；再见\n李四"
    spans = sentence_spans(text, "zh")
    assert [text[s:e] for s, e in spans] == [
        "张三毕业于北京大学。",
        "他现在在上海工作！",
        "你好吗？",
        "好的；",
        "再见",
        "李四",
    ]
    covers(text, split_windows(text, "zh", WindowPolicy(40)))


def test_the_default_budget_keeps_a_long_chinese_sentence_whole():
    """Chinese is estimated at 2 tokens a character: with English's budget a Resume sentence of 90 characters
    would be cut in three; the Chinese default keeps it whole, as the model was trained on it."""
    sentence = (
        "吴重阳，中国国籍，大学本科，教授级高工，享受国务院特殊津贴，历任邮电部侯马电缆厂仪表试制组长、"
        "光缆分厂副厂长、研究所副所长，获得过山西省科技先进工作者、邮电部成绩优异高级工程师等多种荣誉称号。"
    )
    assert len(sentence) > 90 and WindowPolicy().budget("zh") == 320 and WindowPolicy().budget("en") == 64
    assert [w.text for w in split_windows(sentence, "zh")] == [sentence]
    assert len(split_windows(sentence, "zh", WindowPolicy(64))) >= 3
    assert WindowPolicy(100).budget("zh") == WindowPolicy(100).budget("en") == 100


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("abc XYZ.,;!?\n\té日😀")), max_size=400),
    st.integers(min_value=8, max_value=80),
    st.sampled_from(list(WindowUnit)),
)
def test_windows_cover_any_text_once_within_budget(text, budget, unit):
    windows = split_windows(text, "en", WindowPolicy(budget, unit))
    covers(text, windows)
    assert all(estimate_tokens(w.text) <= budget for w in windows)
    assert [w.index for w in windows] == list(range(len(windows)))


def test_the_plan_asks_per_window_and_merges_into_document_offsets():
    plan = DocumentPlan.of(ARTICLE, CONLL, policy=WindowPolicy(64, WindowUnit.PACKED))
    assert plan.count_asks()[:5] == [
        CountAsk(0, "ORG"),
        CountAsk(0, "MISC"),
        CountAsk(0, "PER"),
        CountAsk(0, "LOC"),
        CountAsk(1, "ORG"),
    ]
    assert plan.mention_asks(CountResult("PER", "2", window=1)) == [
        MentionAsk(1, "PER", 2, 1),
        MentionAsk(1, "PER", 2, 2),
    ]
    assert plan.mention_asks(CountResult("PER", "0", window=1)) == []
    counts = [
        CountResult(label, "0", window=w.index)
        for w in plan.windows
        for label in plan.labels
        if (w.index, label) not in {(0, "MISC"), (2, "PER"), (2, "ORG")}
    ]
    counts += [
        CountResult("MISC", "1", -0.1, window=0),
        CountResult("PER", "1", -0.2, window=2),
        CountResult("ORG", "2", -0.1, finish=FinishReason.LENGTH, window=2),
    ]
    mentions = [
        MentionResult("MISC", 1, "British", -0.1, window=0),
        MentionResult("PER", 1, "Werner Zwingmann", -0.2, window=2),
        MentionResult("ORG", 1, "European Union", -0.3, window=2),
        MentionResult("ORG", 2, "European Un", -0.3, finish=FinishReason.LENGTH, window=2),
    ]
    prediction = plan.merge(counts, mentions)
    assert prediction.windows == 3
    found = {(m.label, m.text, m.window): (m.start, m.end) for m in prediction.mentions}
    assert set(found) == {("MISC", "British", 0), ("PER", "Werner Zwingmann", 2), ("ORG", "European Union", 2)}
    for (_, text, _), (start, end) in found.items():
        assert ARTICLE[start:end] == text
    assert ARTICLE.index("Werner Zwingmann") == found[("PER", "Werner Zwingmann", 2)][0]
    assert [m.text for m in prediction.truncated] == ["European Un"], "a mention cut at its limit is no entity"
    by_label = {c.label: c for c in prediction.counts}
    assert by_label["ORG"].count == 2 and by_label["ORG"].status is CountStatus.TRUNCATED
    assert by_label["PER"].count == 1 and by_label["PER"].status is CountStatus.OK
    assert by_label["PER"].probability == pytest.approx(math.exp(-0.2))
    with pytest.raises(ValueError, match="windows"):
        plan.merge([CountResult("PER", "0", window=7)], [])


def test_a_window_text_is_planned_as_one_window():
    text = "Peter  Blackburn\nsaid"
    plan = DocumentPlan.one_window(text, CONLL)
    assert [w.text for w in plan.windows] == [text]
    prediction = plan.merge([CountResult("PER", "1", window=0)], [MentionResult("PER", 1, "Blackburn", window=0)])
    assert [(m.start, m.end) for m in prediction.mentions] == [(7, 16)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "SOCCER - BLINKER BAN LIFTED . LONDON 1996-12-06 Dutch forward Reggie Blinker had his ban lifted .",
            ["SOCCER - BLINKER BAN LIFTED .", "LONDON 1996-12-06", "Dutch forward Reggie Blinker had his ban lifted ."],
        ),
        (
            "WASHINGTON, Dec 7 (Reuters) - The Federal Reserve kept rates .",
            ["WASHINGTON, Dec 7 (Reuters) -", "The Federal Reserve kept rates ."],
        ),
        ("LONDON (Reuters) - Shares fell .", ["LONDON (Reuters) -", "Shares fell ."]),
        # no dateline: a sentence that opens in mixed case, or whose date is followed by lower case
        ("Japan won on 1996-12-06 Friday .", ["Japan won on 1996-12-06 Friday ."]),
        ("EU officials said on Dec 5 that they would meet .", ["EU officials said on Dec 5 that they would meet ."]),
        ("LONDON 1996-12-06", ["LONDON 1996-12-06"]),
    ],
)
def test_a_dateline_run_on_into_its_first_sentence_is_split_off(text, expected):
    assert [text[a:b] for a, b in sentence_spans(text, "en")] == expected
