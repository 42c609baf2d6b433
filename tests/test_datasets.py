"""Every reader reproduces the sentence and mention counts of the datasets' SOURCE.txt files.

Skipped with a message where ../shared/datasets (or PADELLM_DATASETS) is absent.
"""

import zipfile

import pytest

from padellm_ner.data import corpus_stats, read_corpus

pytestmark = pytest.mark.datasets

# path, format, sentences, mentions, per-label counts (where SOURCE.txt gives them), documents (CoNLL)
CASES = [
    ("conll2003/original/train.txt", "conll", 14041, 23499, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}, 946),
    ("conll2003/original/valid.txt", "conll", 3250, 5942, {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}, 216),
    ("conll2003/original/test.txt", "conll", 3453, 5648, {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}, 231),
    (
        "conll2003/padellm_json/conll03_train.json",
        "padellm-json",
        14041,
        23499,
        {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600},
        None,
    ),
    (
        "conll2003/padellm_json/conll03_dev.json",
        "padellm-json",
        3250,
        5942,
        {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842},
        None,
    ),
    (
        "conll2003/padellm_json/conll03_test.json",
        "padellm-json",
        3453,
        5648,
        {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617},
        None,
    ),
    (
        "genia/padellm_json/genia_dev.json",
        "padellm-json",
        1669,
        4367,
        {"DNA": 1030, "RNA": 133, "cell_line": 330, "cell_type": 558, "protein": 2316},
        None,
    ),
    (
        "genia/padellm_json/genia_test.json",
        "padellm-json",
        1854,
        5506,
        {"DNA": 1262, "RNA": 109, "cell_line": 445, "cell_type": 606, "protein": 3084},
        None,
    ),
    (
        "genia/rebuilt_from_raw/genia_train.json",
        "padellm-json",
        15023,
        46142,
        {"DNA": 7684, "RNA": 696, "cell_line": 3069, "cell_type": 5853, "protein": 28840},
        None,
    ),
    (
        "resume/original/train.char.bmes",
        "chars",
        3821,
        13440,
        {"CONT": 260, "EDU": 858, "LOC": 47, "NAME": 952, "ORG": 4613, "PRO": 287, "RACE": 115, "TITLE": 6308},
        None,
    ),
    (
        "resume/original/dev.char.bmes",
        "chars",
        463,
        1497,
        {"CONT": 33, "EDU": 106, "LOC": 2, "NAME": 110, "ORG": 523, "PRO": 18, "RACE": 15, "TITLE": 690},
        None,
    ),
    (
        "resume/original/test.char.bmes",
        "chars",
        477,
        1630,
        {"CONT": 28, "EDU": 112, "LOC": 6, "NAME": 112, "ORG": 553, "PRO": 33, "RACE": 14, "TITLE": 772},
        None,
    ),
    ("resume/padellm_json/resume_train.json", "padellm-json", 3819, 13438, None, None),
    ("resume/padellm_json/resume_test.json", "padellm-json", 477, 1630, None, None),
    (
        "weibo/original/weiboNER_2nd_conll.train",
        "chars",
        1350,
        1895,
        {
            "GPE.NAM": 205,
            "GPE.NOM": 8,
            "LOC.NAM": 56,
            "LOC.NOM": 51,
            "ORG.NAM": 183,
            "ORG.NOM": 42,
            "PER.NAM": 578,
            "PER.NOM": 772,
        },
        None,
    ),
    ("weibo/original/weiboNER_2nd_conll.dev", "chars", 270, 389, None, None),
    (
        "weibo/original/weiboNER_2nd_conll.test",
        "chars",
        270,
        418,
        {
            "GPE.NAM": 47,
            "GPE.NOM": 2,
            "LOC.NAM": 19,
            "LOC.NOM": 9,
            "ORG.NAM": 39,
            "ORG.NOM": 17,
            "PER.NAM": 113,
            "PER.NOM": 172,
        },
        None,
    ),
    ("weibo/original/weiboNER.conll.train", "chars", 1350, 1391, None, None),
    ("weibo/original/weiboNER.conll.dev", "chars", 270, 305, None, None),
    ("weibo/original/weiboNER.conll.test", "chars", 270, 320, None, None),
    ("weibo/padellm_json/weibo_train.json", "padellm-json", 1350, 1894, None, None),
    ("weibo/padellm_json/weibo_test.json", "padellm-json", 270, 418, None, None),
    ("youku/original/train.txt", "chars", 8001, 12754, {"MISC": 2128, "PER": 3559, "TELEVISION": 7067}, None),
    ("youku/original/dev.txt", "chars", 1000, 1581, {"MISC": 257, "PER": 424, "TELEVISION": 900}, None),
    ("youku/original/test.txt", "chars", 1001, 1570, {"MISC": 246, "PER": 419, "TELEVISION": 905}, None),
    ("youku/padellm_json/youku_test.json", "padellm-json", 1001, 1570, None, None),
    ("ecommerce/original/train.txt.bieos", "chars", 3989, 12110, {"HC": 10480, "HP": 1630}, None),
    ("ecommerce/original/dev.txt.bieos", "chars", 500, 1540, {"HC": 1340, "HP": 200}, None),
    ("ecommerce/original/test.txt.bieos", "chars", 498, 1567, {"HC": 1345, "HP": 222}, None),
    ("ecommerce/padellm_json/ecommerce_train.json", "padellm-json", 3989, 12109, None, None),
    ("msra/padellm_json/msra_test.json", "padellm-json", 4361, 5511, {"LOC": 2857, "ORG": 1315, "PER": 1339}, None),
    ("msra/padellm_json/msra_test_old.json", "padellm-json", 4365, 6181, {"LOC": 2877, "ORG": 1331, "PER": 1973}, None),
]


@pytest.mark.parametrize("path, fmt, sentences, mentions, per_label, documents", CASES, ids=[c[0] for c in CASES])
def test_reader_reproduces_source_counts(datasets, path, fmt, sentences, mentions, per_label, documents):
    stats = corpus_stats(read_corpus(datasets / path))
    assert stats["format"] == fmt
    assert (stats["sentences"], stats["mentions"]) == (sentences, mentions)
    if per_label is not None:
        assert stats["per_label"] == per_label
    if documents is not None:
        assert stats["documents"] == documents


@pytest.mark.parametrize(
    "member, sentences, mentions, per_label",
    [
        ("msra_test_bio", 3442, 6190, {"LOC": 2886, "ORG": 1331, "PER": 1973}),
        ("msra_train_bio", 45000, 75059, {"LOC": 36860, "ORG": 20584, "PER": 17615}),
    ],
)
def test_msra_zip_members(datasets, tmp_path, member, sentences, mentions, per_label):
    with zipfile.ZipFile(datasets / "msra/original/MSRA.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith(member))
        target = tmp_path / member
        target.write_bytes(archive.read(name))
    stats = corpus_stats(read_corpus(target))
    assert (stats["format"], stats["sentences"], stats["mentions"]) == ("chars", sentences, mentions)
    assert stats["per_label"] == per_label


def test_original_and_official_conll_agree_entity_for_entity(datasets):
    original = read_corpus(datasets / "conll2003/original/test.txt").documents
    official = read_corpus(datasets / "conll2003/padellm_json/conll03_test.json").documents
    assert len(original) == len(official)
    same = sum(
        [(e.label, e.text) for e in a.entities]
        == [(e.label, e.text.replace("-LPR-", "(").replace("-RPR-", ")")) for e in b.entities]
        for a, b in zip(original, official)
    )
    assert same == len(original)


def test_the_official_file_reads_brackets_as_the_conll_file_does(datasets):
    """-LPR- / -RPR- in the official JSON files are brackets: the two test files give the same texts, entities
    and offsets, sentence by sentence (except seven lines where the official file dropped "None" tokens)."""
    official = read_corpus(datasets / "conll2003/padellm_json/conll03_test.json").documents
    original = read_corpus(datasets / "conll2003/original/test.txt").documents
    assert not any("-LPR-" in d.text or "-RPR-" in d.text for d in official)
    same = [(a, b) for a, b in zip(official, original) if a.text == b.text]
    assert len(same) == 3446
    assert sum("(" in a.text for a, _ in same) >= 500
    assert all(
        [(e.start, e.end, e.label) for e in a.entities] == [(e.start, e.end, e.label) for e in b.entities]
        for a, b in same
    )


@pytest.mark.slow
def test_the_official_file_and_the_conll_file_score_alike(datasets, serving_engine_model):
    """The shipped model on a sample of sentences with brackets, read from each file: the same F1."""
    from padellm_ner.core import get_schema, set_scores
    from workers.engine.padellm import PadellmEngine

    official = read_corpus(datasets / "conll2003/padellm_json/conll03_test.json").documents
    original = read_corpus(datasets / "conll2003/original/test.txt").documents
    pairs = [(a, b) for a, b in zip(official, original) if "(" in b.text and a.text == b.text][:24]
    engine, schema = PadellmEngine(serving_engine_model), get_schema("conll03")
    scores = []
    for documents in zip(*pairs):
        predictions = [engine.recognize(d.text, schema).prediction.by_label() for d in documents]
        scores.append(set_scores((p, d.mentions_by_label()) for p, d in zip(predictions, documents)).micro_f1)
    assert scores[0] == scores[1] and scores[0] > 0.5
