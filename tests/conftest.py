import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DATASETS = Path(os.environ.get("PADELLM_DATASETS", REPO.parent / "shared" / "datasets"))
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The ISA flags of this CPU that decide its precisions (AVX2 only: fp32; AVX512-BF16 or AMX: native bf16)."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in ISA_FLAGS if flag in words]


def auto_precision() -> str:
    """What the engine's `auto` precision resolves to on this machine's CPU (PADELLM_CPU_NATIVE_BF16 included)."""
    try:
        import torch

        from workers.engine.precision import pick_precision
    except ImportError:
        return "unknown (no torch)"
    return pick_precision("auto", torch.device("cpu")).value


def pytest_report_header(config):
    override = os.environ.get("PADELLM_CPU_NATIVE_BF16")
    return [
        f"cpu: {' '.join(cpu_flags()) or 'no flags read'}; engine precision auto -> {auto_precision()}"
        + (f" (PADELLM_CPU_NATIVE_BF16={override})" if override else "")
        + (f"; PADELLM_DTYPE={os.environ['PADELLM_DTYPE']}" if os.environ.get("PADELLM_DTYPE") else "")
    ]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "precision(name): the engine precision the test pins (PADELLM_DTYPE for its processes and loads), "
        "because it compares with an exact reference; reported per test",
    )
    config.addinivalue_line("markers", "vllm: needs a real vLLM server (scripts/vllm.sh), started if none runs")


def pinned_precision(node) -> str | None:
    marker = node.get_closest_marker("precision")
    return marker.args[0] if marker else None


@pytest.fixture(autouse=True)
def _precision_of_the_test(request, monkeypatch):
    """A test marked `precision(name)` runs its engines in that precision whatever the machine's `auto` gives
    (PADELLM_DTYPE, which processes it spawns inherit); the precision is recorded with the test's report."""
    name = pinned_precision(request.node)
    if name:
        monkeypatch.setenv("PADELLM_DTYPE", name)
        request.node.user_properties.append(("precision", name))


def pytest_terminal_summary(terminalreporter):
    pinned: dict[str, int] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) == "call":
                for key, value in getattr(report, "user_properties", ()):
                    if key == "precision":
                        pinned[value] = pinned.get(value, 0) + 1
    if pinned:
        terminalreporter.write_line(
            "precision-pinned tests: "
            + ", ".join(f"{n} in {name}" for name, n in sorted(pinned.items()))
            + f"; auto resolved to {auto_precision()} on this CPU"
        )


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"datasets not found at {DATASETS} (set PADELLM_DATASETS to run the corpus checks)")
    return DATASETS


@pytest.fixture(scope="session")
def datasets_or_none() -> Path | None:
    """../shared/datasets where present, else None (for tests that run on the bundled samples without it)."""
    return DATASETS if DATASETS.is_dir() else None


@pytest.fixture(scope="session")
def base_engine_model():
    """The real base model (SmolLM2-135M-Instruct, fetched by the set-up), without any adapter."""
    torch = pytest.importorskip("torch")
    from workers.engine.loading import load_engine_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    # fp32 whatever the CPU: the tests on it compare with reference decodes (transformers' generate) exactly
    return load_engine_model(adapter=False, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory):
    """A small randomly initialised model of the base architecture (Llama) with the real SmolLM2 tokenizer,
    saved as a transformers folder: fast enough for training and export tests."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from workers.base_model import ensure_base_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_base_model())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-base")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def serving_engine_model():
    """The model the serving tests run: the shipped PaDeLLM model (base SmolLM2 + adapter), or the one named
    by PADELLM_MODEL; the bare base model where neither exists yet. In fp32 whatever the CPU, so that what the
    tests compare (records of two paths, probabilities to 1e-4) does not depend on the machine; the bf16 path
    has its own fixture and tests."""
    torch = pytest.importorskip("torch")
    from workers.engine.loading import load_engine_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_engine_model(device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def serving_engine_model_bf16():
    """The same model in bf16 (native where the CPU has AVX512-BF16 or AMX, emulated by torch elsewhere)."""
    torch = pytest.importorskip("torch")
    from workers.engine.loading import load_engine_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_engine_model(device="cpu", dtype="bfloat16")


def _port_open(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A real Apache Kafka broker: KAFKA_BOOTSTRAP if set, else the project's broker (scripts/kafka.sh),
    started here if it is not running (and stopped again at the end)."""
    import subprocess

    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    started = False
    if not _port_open("127.0.0.1", 9092):
        subprocess.run(["bash", str(REPO / "scripts" / "kafka.sh"), "start"], check=True)
        started = True
    yield "127.0.0.1:9092"
    if started:
        subprocess.run(["bash", str(REPO / "scripts" / "kafka.sh"), "stop"], check=True)


@pytest.fixture(scope="module")
def worker_process(request):
    """A real `padellm-ner worker` process on loopback (the default model), for the stream tests."""
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "padellm-ner")
    env = {**os.environ, "PADELLM_THREADS": "1", "PADELLM_LOG_LEVEL": "WARNING"}
    # the worker runs in the precision its test module pins, else in the machine's `auto`
    precision = pinned_precision(request.node)
    if precision:
        env["PADELLM_DTYPE"] = precision
    process = subprocess.Popen(
        [cli, "worker", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    line = process.stdout.readline()
    assert "ready on" in line, line
    yield line.strip().rsplit(" ", 1)[-1]
    process.terminate()
    process.wait(timeout=60)


@pytest.fixture(scope="session")
def vllm_server():
    """A real vLLM server serving the shipped model (scripts/vllm.sh): VLLM_URL (with VLLM_MODEL and VLLM_DTYPE)
    if set, else the project's, started here if it is not running (and stopped again at the end). Yields
    (url, served model name, serving folder, dtype)."""
    import subprocess

    if os.environ.get("VLLM_URL"):
        yield (
            os.environ["VLLM_URL"],
            os.environ.get("VLLM_MODEL", "padellm-conll03"),
            Path(os.environ["VLLM_FOLDER"]) if os.environ.get("VLLM_FOLDER") else None,
            os.environ.get("VLLM_DTYPE", auto_precision()),
        )
        return
    script = str(REPO / "scripts" / "vllm.sh")
    started = subprocess.run(["bash", script, "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run(["bash", script, "start"], check=True)
    values = dict(item.split("=", 1) for item in subprocess.check_output(["bash", script, "env"], text=True).split())
    yield values["VLLM_URL"], values["VLLM_MODEL"], Path(values["VLLM_FOLDER"]), values["VLLM_DTYPE"]
    if started:
        subprocess.run(["bash", script, "stop"], check=True)
