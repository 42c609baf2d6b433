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
