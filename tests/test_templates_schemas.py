import pytest

from padellm_ner.core import SCHEMAS, get_schema, infer_schema, template_for


def test_english_prompts_are_the_official_bytes():
    t = template_for("en")
    assert (
        t.count_prompt("EU rejects German call .", "ORG")
        == "text:\nEU rejects German call .\nentity type:\nORG\n\n<num>"
    )
    assert t.mention_prompt("EU rejects German call .", "MISC", 2, 1) == (
        "text:\nEU rejects German call .\nentity type:\nMISC\n\n<num>2\n<mention 1>"
    )
    assert t.target(2, 2, "German") == "2\n<mention 2>German"
    assert t.target(0) == "0"


def test_chinese_prompts_are_the_official_bytes():
    t = template_for("zh")
    prompt = t.count_prompt("常建良，男，", "名称")
    assert prompt == "文本:\n常建良，男，\n指定NER标签:\n名称\n\n<数量>"
    assert prompt.encode() == (
        b"\xe6\x96\x87\xe6\x9c\xac:\n\xe5\xb8\xb8\xe5\xbb\xba\xe8\x89\xaf\xef\xbc\x8c\xe7\x94\xb7\xef\xbc\x8c\n"
        b"\xe6\x8c\x87\xe5\xae\x9aNER\xe6\xa0\x87\xe7\xad\xbe:\n\xe5\x90\x8d\xe7\xa7\xb0\n\n<\xe6\x95\xb0\xe9\x87\x8f>"
    )
    assert t.mention_suffix(3, 2) == "3\n<第2文段>"


def test_shared_prefix_and_label_branch_compose_the_prompt():
    for language, label in (("en", "LOC"), ("zh", "地点")):
        t = template_for(language)
        text = "a {text} with braces and 文本"
        assert t.shared_prefix(text) + t.label_branch(label) == t.count_prompt(text, label)
        assert label not in t.shared_prefix(text)
    assert template_for("en").shared_prefix("x") == "text:\nx\nentity type:\n"


def test_mention_index_outside_count_is_rejected():
    with pytest.raises(ValueError):
        template_for("en").mention_suffix(2, 3)
    with pytest.raises(ValueError):
        template_for("en").mention_suffix(2, 0)


@pytest.mark.parametrize(
    "name, labels",
    [
        ("conll03", ("ORG", "MISC", "PER", "LOC")),
        ("genia", ("DNA", "RNA", "cell_type", "protein", "cell_line")),
        ("ace05", ("GPE", "LOC", "VEH", "WEA", "PER", "ORG", "FAC")),
        ("ecommerce", ("HC", "HP")),
        ("youku", ("TELEVISION", "PER", "MISC")),
        ("resume", ("NAME", "CONT", "RACE", "TITLE", "EDU", "ORG", "PRO", "LOC")),
        ("msra", ("PER", "LOC", "ORG")),
        ("ontonotes", ("PER", "LOC", "ORG", "GPE")),
    ],
)
def test_official_label_order(name, labels):
    assert get_schema(name).labels == labels


def test_chinese_prompt_words():
    assert get_schema("weibo").prompt_word("GPE.NOM") == "行政区代称"
    assert get_schema("resume").prompt_word("LOC") == "籍贯"
    assert get_schema("youku").label_for_word("明星") == "PER"
    assert get_schema("conll03").prompt_word("PER") == "PER"
    for schema in SCHEMAS.values():
        assert schema.language == ("en" if schema.name in ("conll03", "genia", "ace05") else "zh")
        for label in schema.labels:
            assert schema.label_for_word(schema.prompt_word(label)) == label


def test_unknown_schema_and_label_give_clear_errors():
    with pytest.raises(KeyError, match="unknown label schema"):
        get_schema("nope")
    with pytest.raises(KeyError, match="not in schema conll03"):
        get_schema("conll03").prompt_word("GPE")


def test_infer_schema():
    assert infer_schema({"PER", "LOC"}, "en").name == "conll03"
    assert infer_schema({"PER", "LOC"}, "zh").name == "msra"
    assert infer_schema({"protein"}).name == "genia"
    custom = infer_schema({"B", "A"})
    assert custom.name == "custom" and custom.labels == ("A", "B")


def test_autoreg_struct_target_and_parse_round_trip():
    from padellm_ner.core import Document, make_entity
    from padellm_ner.core.autoreg import parse_struct, struct_target

    text = "Cuttitta ( Italy ) , who faced England at the 1995 World Cup"
    doc = Document(
        "d",
        text,
        tuple(make_entity(text, *span) for span in [(0, 8, "PER"), (9, 18, "LOC"), (31, 38, "LOC"), (46, 60, "MISC")]),
    )
    target = struct_target(doc, get_schema("conll03"))
    assert target == (
        "((PER): (Cuttitta), (LOC): (( Italy )), (LOC): (England), (MISC): (1995 World Cup), (ORG): (NULL))"
    )
    assert parse_struct(target, get_schema("conll03")) == [
        ("PER", "Cuttitta"),
        ("LOC", "( Italy )"),
        ("LOC", "England"),
        ("MISC", "1995 World Cup"),
    ]
    assert parse_struct("((PER): (Cutt", get_schema("conll03")) == [("PER", "Cutt")]  # truncated output
    assert parse_struct("garbage", get_schema("conll03")) == []
    zh = parse_struct("((名称): (常建良), (国籍): (NULL))", get_schema("resume"))
    assert zh == [("NAME", "常建良")]
