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


@pytest.fixture(scope="session")
def base_engine_model():
    """The real base model (SmolLM2-135M-Instruct, fetched by the set-up), without any adapter."""
    torch = pytest.importorskip("torch")
    from workers.engine.loading import load_engine_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_engine_model(adapter=False, device="cpu")


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
    by PADELLM_MODEL; the bare base model where neither exists yet."""
    torch = pytest.importorskip("torch")
    from workers.engine.loading import load_engine_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_engine_model(device="cpu")


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
def worker_process():
    """A real `padellm-ner worker` process on loopback (the default model), for the stream tests."""
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "padellm-ner")
    env = {**os.environ, "PADELLM_THREADS": "1", "PADELLM_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [cli, "worker", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    line = process.stdout.readline()
    assert "ready on" in line, line
    yield line.strip().rsplit(" ", 1)[-1]
    process.terminate()
    process.wait(timeout=60)
