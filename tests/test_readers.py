import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padellm_ner.core import Document, Entity, make_entity
from padellm_ner.data import (
    detect_format,
    read_columns,
    read_jsonl,
    read_padellm_json,
    write_columns,
    write_jsonl,
    write_padellm_json,
)
from padellm_ner.data.columns import CHARS, CHARS_WITH_SEGMENT_DIGIT, WORDS
from padellm_ner.data.tagging import decode, detect_scheme, encode

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def test_conll_words_with_docstart():
    docs, info = read_columns(CONLL, "t")
    assert info == {"mode": WORDS, "scheme": "iob2"}
    assert [d.text for d in docs] == ["EU rejects German call .", "Peter Blackburn", "BRUSSELS"]
    assert [(e.start, e.end, e.label, e.text) for e in docs[0].entities] == [
        (0, 2, "ORG", "EU"),
        (11, 17, "MISC", "German"),
    ]
    assert [d.source_document for d in docs] == ["t-doc0", "t-doc0", "t-doc1"]
    assert docs[1].tokens == ((0, 5), (6, 15))


@pytest.mark.parametrize(
    "tags, spans",
    [
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),  # IOB1
        (["B-PER", "I-PER", "B-PER", "O", "B-LOC"], [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),  # IOB2
        (["B-PER", "E-PER", "S-PER", "O", "S-LOC"], [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),  # BIOES
        (["B-ORG", "M-ORG", "E-ORG", "S-ORG"], [(0, 3, "ORG"), (3, 4, "ORG")]),  # BMES
        (["B-PER", "I-LOC", "O"], [(0, 1, "PER"), (1, 2, "LOC")]),  # an I- of another type starts an entity
    ],
)
def test_tag_decoding(tags, spans):
    assert decode(tags) == spans


def test_scheme_detection_and_malformed_tags():
    assert detect_scheme([["I-PER", "O"]]) == "iob1"
    assert detect_scheme([["B-PER", "I-PER"]]) == "iob2"
    assert detect_scheme([["S-PER"]]) == "bioes"
    assert detect_scheme([["B-PER", "M-PER", "E-PER"]]) == "bmes"
    with pytest.raises(ValueError, match="t:2: malformed tag 'Z-ORG'"):
        read_columns("EU O\nrejects Z-ORG\n", "t")


def test_chinese_characters_spaces_and_crlf():
    text = "优\tB-TELEVISION\r\n酷\tE-TELEVISION\r\n \tO\r\n看\tO\r\n\r\n北\tS-LOC\r\n"
    docs, info = read_columns(text, "t", mode="auto")
    assert info["mode"] == CHARS
    assert [d.text for d in docs] == ["优酷 看", "北"]
    assert docs[0].entities == (Entity(0, 2, "TELEVISION", "优酷"),)
    assert docs[0].language == "zh"
    spaced = "  O\n北 B-LOC\n京 I-LOC\n"  # a literal space character, then "北京", space-separated
    docs, _ = read_columns(spaced, "t", mode=CHARS)
    assert docs[0].text == " 北京" and docs[0].entities[0].text == "北京"


def test_weibo_segment_digits_are_removed():
    text = "我0\tO\n在0\tO\n北0\tB-GPE.NAM\n京1\tI-GPE.NAM\n2\tO\n"
    docs, info = read_columns("\n".join(text.split("\n")[:4]) + "\n", "t")
    assert info["mode"] == CHARS_WITH_SEGMENT_DIGIT
    assert docs[0].text == "我在北京" and docs[0].entities[0].text == "北京"


def test_official_json_token_inclusive_and_genia_exclusive():
    conll = '["SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .", [2, 2, "JAPAN", "LOC"], [7, 7, "CHINA", "PER"]]\n'
    docs, info = read_padellm_json(conll, "t")
    assert info == {"offsets": "token", "end": "inclusive"}
    assert [(e.start, e.end, e.text) for e in docs[0].entities] == [(9, 14, "JAPAN"), (31, 36, "CHINA")]
    genia = '["the IL-2 gene promoter", [1, 4, "IL-2 gene promoter", "DNA"], [1, 2, "IL-2", "protein"]]\n'
    docs, info = read_padellm_json(genia, "t")
    assert info == {"offsets": "token", "end": "exclusive"}
    assert [(e.start, e.end, e.label) for e in docs[0].entities] == [(4, 8, "protein"), (4, 22, "DNA")]
    chinese = '["常建良，男，", [0, 2, "常建良", "NAME"]]\n'
    docs, info = read_padellm_json(chinese, "t")
    assert info == {"offsets": "char", "end": "inclusive"} and docs[0].language == "zh"


def test_official_json_mismatch_is_a_clear_error():
    bad = '["a b c", [0, 0, "a", "X"]]\n["a b c", [1, 1, "c", "X"]]\n'
    with pytest.raises(ValueError, match="t:2: entity"):
        read_padellm_json(bad, "t")


def test_jsonl_validation():
    good = '{"id": "d1", "text": "EU rejects", "entities": [{"start": 0, "end": 2, "label": "ORG", "text": "EU"}]}\n'
    docs, _ = read_jsonl(good, "t")
    assert docs[0].id == "d1" and docs[0].entities[0].text == "EU" and docs[0].language == "en"
    for bad, message in [
        ("not json", "not JSON"),
        ('{"id": 1}', "'text'"),
        ('{"text": "EU", "entities": [{"start": 0, "end": 9, "label": "ORG"}]}', "offsets"),
        ('{"text": "EU", "entities": [{"start": 0, "end": 2, "label": "ORG", "text": "XX"}]}', "differs"),
        ('{"text": "EU", "language": "fr"}', "language"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_jsonl(bad, "t")


def test_format_detection():
    assert detect_format(CONLL) == "conll"
    assert detect_format('["a b", [0, 0, "a", "X"]]\n') == "padellm-json"
    assert detect_format('["only a sentence"]\n') == "padellm-json"
    assert detect_format('{"text": "a"}\n') == "jsonl"
    assert detect_format('[\n  {"id": 0, "pred": {}, "gt": {}}\n]') == "padellm-results"
    assert detect_format("[ O\n优 B-TELEVISION\n") == "conll"  # a character file whose first character is "["
    assert detect_format("{ O\n") == "conll"


def test_document_rejects_inconsistent_entities():
    with pytest.raises(ValueError, match="holds"):
        Document("d", "EU rejects", (Entity(0, 2, "ORG", "XX"),))
    with pytest.raises(ValueError, match="outside"):
        Document("d", "EU", (Entity(0, 5, "ORG", "EU"),))


# --- round trips -------------------------------------------------------------------------------------------

LABELS = st.sampled_from(["PER", "LOC", "ORG", "MISC"])
WORD = st.text(alphabet="abcdefXYZ0123-.,'()", min_size=1, max_size=6).filter(lambda w: w != "-DOCSTART-")


@st.composite
def tagged_documents(draw, word=WORD, joiner=" "):
    tokens = draw(st.lists(word, min_size=1, max_size=12))
    spans, position = [], 0
    while position < len(tokens):
        if draw(st.booleans()):
            end = draw(st.integers(position + 1, min(len(tokens), position + 3)))
            spans.append((position, end, draw(LABELS)))
            position = end
        else:
            position += 1
    offsets, p = [], 0
    for token in tokens:
        offsets.append((p, p + len(token)))
        p += len(token) + len(joiner)
    text = joiner.join(tokens)
    entities = tuple(make_entity(text, offsets[s][0], offsets[e - 1][1], label) for s, e, label in spans)
    return Document("d", text, entities, language="en" if joiner else "zh", tokens=tuple(offsets) if joiner else None)


def _same(a: list[Document], b: list[Document]) -> None:
    assert [(d.text, d.entities) for d in a] == [(d.text, d.entities) for d in b]


@settings(max_examples=150)
@given(st.lists(tagged_documents(), min_size=1, max_size=4), st.sampled_from(["iob1", "iob2", "bioes", "bmes"]))
def test_columns_round_trip_words(docs, scheme):
    back, _ = read_columns(write_columns(docs, scheme, WORDS), "d", mode=WORDS)
    _same(docs, back)
    # encoding the decoded tags again gives the same tags
    for doc in back:
        tokens = [doc.text[s:e] for s, e in doc.tokens]
        spans = [
            (
                next(i for i, (s, _) in enumerate(doc.tokens) if s == e.start),
                next(i for i, (_, t) in enumerate(doc.tokens) if t == e.end) + 1,
                e.label,
            )
            for e in doc.entities
        ]
        assert decode(encode(len(tokens), spans, scheme)) == spans


CHAR = st.sampled_from(list("北京大学优酷看 ，。A1"))


@settings(max_examples=150)
@given(
    st.lists(tagged_documents(word=CHAR, joiner=""), min_size=1, max_size=4),
    st.sampled_from(["iob1", "iob2", "bioes", "bmes"]),
)
def test_columns_round_trip_chars(docs, scheme):
    back, _ = read_columns(write_columns(docs, scheme, CHARS), "d", mode=CHARS)
    _same(docs, back)


@settings(max_examples=150)
@given(st.lists(tagged_documents(), min_size=1, max_size=4), st.sampled_from(["inclusive", "exclusive"]))
def test_official_json_round_trip_tokens(docs, end):
    back, _ = read_padellm_json(write_padellm_json(docs, "token", end), "d", offsets="token", end=end)
    _same(docs, back)


@settings(max_examples=100)
@given(st.lists(tagged_documents(word=CHAR, joiner=""), min_size=1, max_size=4))
def test_official_json_round_trip_chars(docs):
    back, _ = read_padellm_json(write_padellm_json(docs, "char", "inclusive"), "d", offsets="char", end="inclusive")
    _same(docs, back)


@st.composite
def nested_documents(draw):
    text = draw(st.text(min_size=1, max_size=30).filter(lambda t: "\n" not in t and "\r" not in t))
    n = len(text)
    entities = []
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, n - 1))
        end = draw(st.integers(start + 1, n))
        entities.append(make_entity(text, start, end, draw(LABELS)))
    return Document(draw(st.text(min_size=1, max_size=5)), text, tuple(entities), language="en")


@settings(max_examples=150)
@given(st.lists(nested_documents(), min_size=1, max_size=4))
def test_jsonl_round_trip_with_nested_spans(docs):
    back, _ = read_jsonl(write_jsonl(docs), "d")
    assert [(d.id, d.text, d.entities) for d in docs] == [(d.id, d.text, d.entities) for d in back]


def test_nested_spans_cannot_be_written_as_tags():
    doc = Document("d", "a b", (make_entity("a b", 0, 3, "X"), make_entity("a b", 0, 1, "Y")), tokens=((0, 1), (2, 3)))
    with pytest.raises(ValueError, match="nested"):
        write_columns([doc])
    assert json.loads(write_jsonl([doc]))["entities"][1]["text"] == "a b"


def test_official_bracket_escapes_read_as_brackets():
    line = '["Chelsea -LPR- England -RPR- beat Austria-RPR-118 .", [0, 0, "Chelsea", "ORG"], [2, 2, "England", "LOC"]]'
    (document,), details = read_padellm_json(line)
    assert document.text == "Chelsea ( England ) beat Austria)118 ."
    assert [(e.text, e.label) for e in document.entities] == [("Chelsea", "ORG"), ("England", "LOC")]
    assert document.text[document.entities[1].start : document.entities[1].end] == "England"
    assert details["offsets"] == "token"


@pytest.mark.parametrize(("join", "separator"), [("line", "\n"), ("space", " ")])
def test_documents_join_their_sentences_on_lines_or_run_on(join, separator):
    from padellm_ner.data.units import in_unit

    docs, _ = read_columns(CONLL, "t")
    article, short = in_unit(docs, "document", join)
    assert article.text == f"EU rejects German call .{separator}Peter Blackburn" and short.text == "BRUSSELS"
    assert [(article.text[e.start : e.end], e.label) for e in article.entities] == [
        ("EU", "ORG"),
        ("German", "MISC"),
        ("Peter Blackburn", "PER"),
    ]
    assert [article.text[a:b] for a, b in article.sentences] == ["EU rejects German call .", "Peter Blackburn"]
