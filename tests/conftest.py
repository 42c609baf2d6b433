import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DATASETS = Path(os.environ.get("PADELLM_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"datasets not found at {DATASETS} (set PADELLM_DATASETS to run the corpus checks)")
    return DATASETS
