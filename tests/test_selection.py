import pytest

from padellm_ner.data.selection import select_documents, selection_label

DOCS = [f"doc-{i}" for i in range(100)]


def test_first_n_and_all():
    assert select_documents(DOCS, limit=3) == ["doc-0", "doc-1", "doc-2"]
    assert select_documents(DOCS) == DOCS


def test_sample_is_seeded_in_corpus_order_and_without_repeats():
    a = select_documents(DOCS, sample=10, seed=7)
    assert a == select_documents(DOCS, sample=10, seed=7)
    assert a != select_documents(DOCS, sample=10, seed=8)
    assert len(set(a)) == 10 and a == sorted(a, key=DOCS.index)
    assert a != DOCS[:10]


def test_sample_larger_than_corpus_takes_everything():
    assert select_documents(DOCS[:5], sample=50) == DOCS[:5]


@pytest.mark.parametrize("kwargs", [{"limit": 3, "sample": 3}, {"sample": 0}, {"limit": -1}])
def test_bad_selection_is_refused(kwargs):
    with pytest.raises(ValueError):
        select_documents(DOCS, **kwargs)


def test_label():
    assert selection_label(None, 10, 3, 100) == {"how": "sample", "size": 10, "seed": 3, "of": 100}
    assert selection_label(300, None, 0, 100) == {"how": "first", "size": 100, "of": 100}
