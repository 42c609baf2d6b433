"""Label schemas per dataset: the official label order and the words put into prompts.

Orders and Chinese prompt words follow the official PaDeLLM-NER inference scripts
(FACTS.md §1; paper Table 10), so prompts built here match the released checkpoints byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ENGLISH = "en"
CHINESE = "zh"
LANGUAGES = (ENGLISH, CHINESE)


@dataclass(frozen=True)
class LabelSchema:
    name: str
    language: str
    labels: tuple[str, ...]
    # Tag -> word used in the prompt. English schemas use the tag itself.
    prompt_words: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"schema {self.name}: unknown language {self.language!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"schema {self.name}: repeated labels in {self.labels}")
        words = {label: self.prompt_words.get(label, label) for label in self.labels}
        if len(set(words.values())) != len(words):
            raise ValueError(f"schema {self.name}: two labels share one prompt word")
        object.__setattr__(self, "prompt_words", MappingProxyType(words))

    def prompt_word(self, label: str) -> str:
        try:
            return self.prompt_words[label]
        except KeyError:
            raise KeyError(f"label {label!r} is not in schema {self.name} ({', '.join(self.labels)})") from None

    def label_for_word(self, word: str) -> str:
        """The tag for a prompt word (or for the tag itself), e.g. 名称 -> NAME in `resume`."""
        if word in self.prompt_words:
            return word
        for label, prompt_word in self.prompt_words.items():
            if prompt_word == word:
                return label
        raise KeyError(f"{word!r} is neither a label nor a prompt word of schema {self.name}")


def _schema(name: str, language: str, words: dict[str, str] | tuple[str, ...]) -> LabelSchema:
    if isinstance(words, tuple):
        return LabelSchema(name, language, words)
    return LabelSchema(name, language, tuple(words), words)


SCHEMAS: Mapping[str, LabelSchema] = MappingProxyType(
    {
        s.name: s
        for s in (
            _schema("conll03", ENGLISH, ("ORG", "MISC", "PER", "LOC")),
            _schema("genia", ENGLISH, ("DNA", "RNA", "cell_type", "protein", "cell_line")),
            _schema("ace05", ENGLISH, ("GPE", "LOC", "VEH", "WEA", "PER", "ORG", "FAC")),
            _schema("ecommerce", CHINESE, {"HC": "商品", "HP": "品牌"}),
            _schema("youku", CHINESE, {"TELEVISION": "电视剧", "PER": "明星", "MISC": "其他"}),
            _schema(
                "resume",
                CHINESE,
                {
                    "NAME": "名称",
                    "CONT": "国籍",
                    "RACE": "民族",
                    "TITLE": "职位",
                    "EDU": "学历",
                    "ORG": "公司",
                    "PRO": "专业",
                    "LOC": "籍贯",
                },
            ),
            _schema(
                "weibo",
                CHINESE,
                {
                    "PER.NAM": "名称特指",
                    "PER.NOM": "名称代称",
                    "GPE.NAM": "行政区特指",
                    "GPE.NOM": "行政区代称",
                    "LOC.NOM": "地点代称",
                    "LOC.NAM": "地点特指",
                    "ORG.NOM": "组织代称",
                    "ORG.NAM": "组织特指",
                },
            ),
            _schema("ontonotes", CHINESE, {"PER": "名称", "LOC": "地点", "ORG": "组织", "GPE": "地缘"}),
            _schema("msra", CHINESE, {"PER": "名称", "LOC": "地点", "ORG": "组织"}),
        )
    }
)

DEFAULT_SCHEMA = "conll03"


def get_schema(name: str) -> LabelSchema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise KeyError(f"unknown label schema {name!r}; known: {', '.join(SCHEMAS)}") from None


def infer_schema(labels: set[str], language: str | None = None) -> LabelSchema:
    """The smallest known schema whose labels cover `labels` (ties: the first listed).

    Falls back to an ad-hoc schema with the labels in sorted order, so any corpus can be reformulated.
    """
    candidates = [
        s for s in SCHEMAS.values() if labels <= set(s.labels) and (language is None or s.language == language)
    ]
    if candidates and labels:
        return min(candidates, key=lambda s: len(s.labels))
    return LabelSchema("custom", language or ENGLISH, tuple(sorted(labels)))
