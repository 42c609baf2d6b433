from padellm_ner.core import get_schema
from workers.prompts import count_requests, mention_requests


def test_count_requests_cover_every_label_in_order():
    requests = count_requests("EU rejects German call .", get_schema("conll03"))
    assert [r.label for r in requests] == ["ORG", "MISC", "PER", "LOC"]
    assert requests[2].prompt == "text:\nEU rejects German call .\nentity type:\nPER\n\n<num>"


def test_mention_requests_fan_out_per_label_and_k():
    requests = mention_requests("EU rejects German call .", get_schema("conll03"), {"LOC": 0, "MISC": 1, "ORG": 2})
    assert [(r.label, r.k) for r in requests] == [("ORG", 1), ("ORG", 2), ("MISC", 1)]
    assert requests[1].prompt.endswith("ORG\n\n<num>2\n<mention 2>")


def test_chinese_requests_use_prompt_words():
    requests = mention_requests("常建良，男，", get_schema("resume"), {"NAME": 1})
    assert requests[0].prompt == "文本:\n常建良，男，\n指定NER标签:\n名称\n\n<数量>1\n<第1文段>"
