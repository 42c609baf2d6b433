"""The layers of ARCHITECTURE.md: import contracts (import-linter, `pyproject.toml`) and a service that runs
without torch."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Imports every module of the service with the model stack made unimportable, as in the service image.
WITHOUT_TORCH = """
import importlib, importlib.abc, pkgutil, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "peft", "safetensors", "accelerate", "gguf"}:
            raise ImportError(f"{name} is not installed in the service image")
        return None

sys.meta_path.insert(0, Blocked())
import service
names = [m.name for m in pkgutil.walk_packages(service.__path__, "service.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_import_contracts_hold():
    result = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_service_module_imports_without_torch():
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip()) >= 10  # the walk found the service's modules
