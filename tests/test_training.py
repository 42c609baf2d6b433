"""Training data flow, the block-masked packing, resumable checkpoints and export, on a tiny model."""

import json

import pytest
import torch
from conftest import EXAMPLES
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from padellm_ner.core import get_schema
from padellm_ner.data import read_corpus
from workers.training.examples import AUTOREG_STRUCT, PADELLM, tokenize_document
from workers.training.loop import TrainConfig, batch_loss, train
from workers.training.packing import IGNORE, collate, pack, split_to_fit

# the engine loads exported models in fp32 here, whatever the CPU's `auto`: the tests compare its weights and
# logits with the training run's, exactly or to fp32 rounding
pytestmark = pytest.mark.precision("float32")


@pytest.fixture(scope="module")
def docs():
    return read_corpus(EXAMPLES / "sample.conll").documents


@pytest.fixture(scope="module")
def tokenizer(tiny_base_model):
    return AutoTokenizer.from_pretrained(tiny_base_model)


def test_tokenized_documents_share_one_prefix(docs, tokenizer):
    doc = tokenize_document(tokenizer, docs[1], get_schema("conll03"), PADELLM)
    assert len(doc.branches) == 6  # MISC x2, LOC x2, ORG 0, PER 0
    assert all(b.target_ids[-1] == tokenizer.eos_token_id for b in doc.branches)
    assert doc.unshared_tokens > doc.tokens
    first_misc = doc.branches[1]  # ORG (zero count) comes first in the schema order
    text = tokenizer.decode(list(doc.prefix_ids) + list(first_misc.prompt_ids) + list(first_misc.target_ids))
    assert text.startswith("text:\nThe Dutch team") and "entity type:\nMISC\n\n<num>2\n<mention 1>Dutch" in text
    struct = tokenize_document(tokenizer, docs[1], get_schema("conll03"), AUTOREG_STRUCT)
    assert len(struct.branches) == 1 and struct.branches[0].prompt_ids == ()
    assert tokenizer.decode(list(struct.branches[0].target_ids)).startswith("((MISC): (Dutch), (LOC): (Brazil)")


def _per_example_loss(model, doc) -> tuple[float, int]:
    """Loss summed over every example encoded on its own, the way an unshared trainer would see it."""
    total, count = 0.0, 0
    for branch in doc.branches:
        ids = list(doc.prefix_ids) + list(branch.prompt_ids) + list(branch.target_ids)
        first = len(doc.prefix_ids) + len(branch.prompt_ids)
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits[first - 1 : -1], -1)
        targets = torch.tensor(ids[first:])
        total += float(-logprobs.gather(1, targets[:, None]).sum().detach())
        count += len(targets)
    return total, count


@pytest.mark.parametrize("objective", [PADELLM, AUTOREG_STRUCT])
def test_packed_rows_give_the_same_loss_as_separate_examples(tiny_base_model, docs, tokenizer, objective):
    model = AutoModelForCausalLM.from_pretrained(tiny_base_model, dtype=torch.float32, attn_implementation="sdpa")
    tokenized = [tokenize_document(tokenizer, d, get_schema("conll03"), objective) for d in docs]
    expected_total, expected_count = 0.0, 0
    for doc in tokenized:
        total, count = _per_example_loss(model, doc)
        expected_total += total
        expected_count += count
    rows = pack(tokenized, max_tokens=200, seed=3)
    assert len(rows) > 1  # several documents per row and several rows
    batch = collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        loss, count = batch_loss(model, batch, bf16=False)
    assert count == expected_count
    assert float(loss) * count == pytest.approx(expected_total, rel=1e-4)


def test_long_documents_are_split_with_their_prefix(docs, tokenizer):
    doc = tokenize_document(tokenizer, docs[2], get_schema("conll03"), PADELLM)
    parts = split_to_fit(doc, len(doc.prefix_ids) + 20)
    assert len(parts) > 1 and all(p.prefix_ids == doc.prefix_ids for p in parts)
    assert sum(len(p.branches) for p in parts) == len(doc.branches)
    rows = pack([doc], max_tokens=len(doc.prefix_ids) + 20)
    targets = sum(1 for r in rows for t in r.targets if t != IGNORE)
    assert targets == sum(len(b.target_ids) for b in doc.branches)


def _config(base, output, **kw):
    values = dict(
        base_model=str(base),
        output=str(output),
        max_steps=4,
        row_tokens=160,
        rows_per_step=2,
        warmup_steps=1,
        lr=1e-3,
        bf16=False,
        checkpoint_minutes=1000.0,
        seed=7,
        schema="conll03",
    )
    values.update(kw)
    return TrainConfig(**values)


def test_training_resumes_to_the_same_weights(tiny_base_model, docs, tokenizer, tmp_path):
    schema = get_schema("conll03")
    straight = train(_config(tiny_base_model, tmp_path / "straight"), docs, schema, tokenizer, log=lambda m: None)
    # interrupted: stop after 2 steps (a checkpoint is written), then resume in a new call
    interrupted = _config(tiny_base_model, tmp_path / "resumed", max_steps=4)
    interrupted.time_budget_minutes = 0.0  # stops after its first step, checkpointed
    train(interrupted, docs, schema, tokenizer, log=lambda m: None)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 1 and not (tmp_path / "resumed" / "final.safetensors").exists()
    train(_config(tiny_base_model, tmp_path / "resumed"), docs, schema, tokenizer, log=lambda m: None)
    a = load_file(straight / "final.safetensors")
    b = load_file(tmp_path / "resumed" / "final.safetensors")
    assert a.keys() == b.keys() and len(a) == 2 * 7  # 2 layers x 7 projections
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    losses = [json.loads(line)["loss"] for line in (straight / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_documents_with_long_lists_are_repeated_per_epoch(docs):
    from padellm_ner.core import Document, make_entity
    from workers.training.sampling import Oversampling, epoch_documents, largest_group

    text = "Kim , Lee , Park and Choi played ; Seoul won ."
    names = [make_entity(text, text.index(n), text.index(n) + len(n), "PER") for n in ("Kim", "Lee", "Park", "Choi")]
    line_up = Document("line-up", text, (*names, make_entity(text, 35, 40, "LOC")))
    corpus = [*docs, line_up]
    assert largest_group(line_up) == 4 and all(largest_group(d) < 4 for d in docs)
    assert epoch_documents(corpus, Oversampling()) == (corpus, 0)  # off by default
    assert epoch_documents(corpus, Oversampling(4, 1)) == (corpus, 0)  # once is not a repeat
    epoch, repeated = epoch_documents(corpus, Oversampling(min_mentions=4, times=3))
    assert repeated == 1 and epoch == [*corpus, line_up, line_up]
    pairs_or_more = sum(largest_group(d) >= 2 for d in docs) + 1
    assert epoch_documents(corpus, Oversampling(min_mentions=2, times=2))[1] == pairs_or_more
    for bad in ((-1, 2), (4, 0)):
        with pytest.raises(ValueError, match="oversampling needs"):
            Oversampling(*bad)


def test_oversampled_training_reads_more_tokens_per_epoch(tiny_base_model, docs, tokenizer, tmp_path):
    from workers.training.sampling import largest_group

    schema = get_schema("conll03")
    lines = {}
    for name, times in (("plain", 1), ("oversampled", 4)):
        logged = []
        config = _config(
            tiny_base_model, tmp_path / name, max_steps=1, oversample_min_mentions=2, oversample_times=times
        )
        train(config, docs, schema, tokenizer, log=logged.append)
        lines[name] = logged
        assert json.loads((tmp_path / name / "train_config.json").read_text())["oversample_times"] == times
    selected = sum(1 for d in docs if largest_group(d) >= 2)
    assert selected and not any("oversampling" in line for line in lines["plain"])
    assert (
        f"oversampling: {selected} documents with a label of >= 2 mentions appear 4x per epoch "
        f"({len(docs)} -> {len(docs) + 3 * selected} documents)"
    ) in lines["oversampled"]
    tokens = [
        int(
            next(m for m in lines[n] if "tokens with prefix" in m).split(" -> ")[1].split(" tokens")[0].replace(",", "")
        )
        for n in ("plain", "oversampled")
    ]
    assert tokens[1] > tokens[0]
    # the exported model says how it was trained, oversampling included (the model card is written from it)
    from workers.training.export import export_run

    export_run(tmp_path / "oversampled", tmp_path / "model", rank=4, version="test", form="lowrank-int8")
    training = json.loads((tmp_path / "model" / "padellm.json").read_text())["training"]
    assert training["oversample_min_mentions"] == 2 and training["oversample_times"] == 4
    assert "time_budget_minutes" not in training
    assert "lora_rank" not in training  # a full fine-tune: no LoRA rank was trained
    # the schedule's length is what set it: max_steps here, epochs where no max_steps was given
    assert training["max_steps"] == 1 and "epochs" not in training
    from workers.training.export import _training_record

    by_epochs = {**config.__dict__, "max_steps": None, "epochs": 2.0}
    assert _training_record(by_epochs)["epochs"] == 2.0 and "max_steps" not in _training_record(by_epochs)


def assert_export_matches_run(model_dir, run, base_model, tokenizer, atol: float = 1e-2) -> None:
    """The exported model, loaded by the engine, gives the logits of the run's fine-tuned weights."""
    from workers.engine.loading import load_engine_model

    engine_model = load_engine_model(model_dir, base_model=base_model, device="cpu")
    tuned = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    tuned.load_state_dict(load_file(run / "final.safetensors"), strict=False)
    ids = torch.tensor([tokenizer("text:\nEU rejects\nentity type:\nORG\n\n<num>")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(engine_model.model(input_ids=ids).logits, tuned(input_ids=ids).logits, atol=atol)


def test_full_run_exports_as_lora_and_loads_in_the_engine(tiny_base_model, docs, tokenizer, tmp_path):
    from workers.training.export import export_run

    run = train(_config(tiny_base_model, tmp_path / "run"), docs, get_schema("conll03"), tokenizer, log=lambda m: None)
    out = tmp_path / "model"
    stats = export_run(run, out, rank=32, version="test")  # rank 32 = full rank of the 32-wide deltas: exact
    assert stats["delta_energy_kept"] == pytest.approx(1.0, abs=1e-6)
    info = json.loads((out / "padellm.json").read_text())
    assert info["objective"] == "padellm" and info["format"] == "lora-from-full-svd-r32"
    assert_export_matches_run(out, run, tiny_base_model, tokenizer)


def test_lora_training_and_export(tiny_base_model, docs, tokenizer, tmp_path):
    from workers.training.export import export_run

    run = train(
        _config(tiny_base_model, tmp_path / "lora", method="lora", lora_rank=4, lora_alpha=8, max_steps=2),
        docs,
        get_schema("conll03"),
        tokenizer,
        log=lambda m: None,
    )
    export_run(run, tmp_path / "model", rank=4, version="test")
    adapter = json.loads((tmp_path / "model" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert json.loads((tmp_path / "model" / "padellm.json").read_text())["training"]["lora_rank"] == 4


def test_an_unfinished_run_exports_from_its_checkpoint_and_says_how_far_it_came(
    tiny_base_model, docs, tokenizer, tmp_path
):
    from workers.training.export import export_run

    config = _config(tiny_base_model, tmp_path / "cut", method="lora", lora_rank=4, lora_alpha=8, max_steps=4)
    config.time_budget_minutes = 0.0  # stops after its first step, checkpointed, unfinished
    run = train(config, docs, get_schema("conll03"), tokenizer, log=lambda m: None)
    assert not (run / "final.safetensors").exists()
    export_run(run, tmp_path / "model", rank=4, version="test")
    training = json.loads((tmp_path / "model" / "padellm.json").read_text())["training"]
    assert training["steps"] == 1 and training["trained_s"] > 0
    assert "not finished" in training["note"]


def test_engine_loads_a_full_run_folder_directly(tiny_base_model, docs, tokenizer, tmp_path):
    from workers.engine.loading import load_engine_model

    run = train(
        _config(tiny_base_model, tmp_path / "run", max_steps=1),
        docs,
        get_schema("conll03"),
        tokenizer,
        log=lambda m: None,
    )
    engine_model = load_engine_model(run, device="cpu")
    tuned = load_file(run / "final.safetensors")
    name = next(iter(tuned))
    assert torch.equal(dict(engine_model.model.named_parameters())[name], tuned[name])
    assert engine_model.info["format"] == "full-run-weights"


def test_full_run_exports_as_int8_low_rank(tiny_base_model, docs, tokenizer, tmp_path):
    from workers.training.export import export_full_as_quantized_lowrank, export_run

    run = train(_config(tiny_base_model, tmp_path / "run"), docs, get_schema("conll03"), tokenizer, log=lambda m: None)
    out = tmp_path / "model"
    stats = export_run(run, out, rank=32, version="test", form="lowrank-int8")  # full rank: only int8 error
    assert stats["delta_energy_kept"] > 0.99
    assert json.loads((out / "padellm.json").read_text())["format"] == "lowrank-int8-r32"
    assert_export_matches_run(out, run, tiny_base_model, tokenizer)
    # int4 with a scale per 32 values (the tiny deltas are 16 to 64 wide): about half the bytes
    int4 = tmp_path / "model-int4"
    stats4 = export_full_as_quantized_lowrank(
        str(tiny_base_model),
        run / "final.safetensors",
        32,
        int4,
        {"objective": "padellm", "schema": "conll03"},
        bits=4,
        group=32,
    )
    assert 0.97 < stats4["delta_energy_kept"] < stats["delta_energy_kept"]
    assert stats4["weights_bytes"] < 0.7 * stats["weights_bytes"]
    assert json.loads((int4 / "padellm.json").read_text())["format"] == "lowrank-int4-g32-r32"
    assert_export_matches_run(int4, run, tiny_base_model, tokenizer, atol=0.05)


def test_int4_codes_round_trip():
    from workers.engine.weights import dequantize as _dequantize
    from workers.engine.weights import quantize as _quantize

    torch.manual_seed(0)
    matrix = torch.randn(5, 128)
    codes, scale = _quantize(matrix, bits=4, group=64)
    assert codes.dtype == torch.uint8 and codes.shape == (5, 64) and scale.shape == (5, 2)
    back = _dequantize(codes, scale, bits=4, group=64, length=128)
    assert (back - matrix).abs().max() <= scale.max() / 2 + 1e-6  # at most half a step from the original
    codes8, scale8 = _quantize(matrix, bits=8, group=None)
    assert codes8.dtype == torch.int8 and scale8.shape == (5, 1)
    assert (_dequantize(codes8, scale8, bits=8, group=None, length=128) - matrix).abs().max() <= scale8.max() / 2 + 1e-6
    # a length that is neither even nor a multiple of the group: padded, then trimmed
    odd = torch.randn(3, 45)
    for group in (16, None):  # None: one scale per component (and an odd length to pack)
        codes, scale = _quantize(odd, bits=4, group=group)
        assert (_dequantize(codes, scale, bits=4, group=group, length=45) - odd).abs().max() <= scale.max() / 2 + 1e-6


def test_a_run_can_start_from_another_runs_weights(tiny_base_model, docs, tokenizer, tmp_path):
    """--init-from: a continuation starts at the first run's weights (at lr 0 it stays there exactly), keeps the
    base model as the reference for export, and refuses weights of another method."""
    schema = get_schema("conll03")
    first = train(
        _config(tiny_base_model, tmp_path / "first", max_steps=2), docs, schema, tokenizer, log=lambda m: None
    )
    lines: list[str] = []
    frozen = _config(tiny_base_model, tmp_path / "frozen", max_steps=1, lr=0.0, init_from=str(first))
    train(frozen, docs, schema, tokenizer, log=lines.append)
    assert f"starting from the weights of {first / 'final.safetensors'}" in lines
    a, b = load_file(first / "final.safetensors"), load_file(tmp_path / "frozen" / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    moved = train(
        _config(tiny_base_model, tmp_path / "moved", max_steps=1, init_from=str(first)),
        docs,
        schema,
        tokenizer,
        log=lambda m: None,
    )
    assert not all(torch.equal(a[n], t) for n, t in load_file(moved / "final.safetensors").items())
    # the export records where the weights started, and its deltas are still taken against the base model
    from workers.training.export import export_run

    export_run(tmp_path / "frozen", tmp_path / "model", rank=32, version="test")
    assert json.loads((tmp_path / "model" / "padellm.json").read_text())["training"]["init_from"] == str(first)
    assert_export_matches_run(tmp_path / "model", tmp_path / "frozen", tiny_base_model, tokenizer)
    lora = _config(tiny_base_model, tmp_path / "lora", method="lora", lora_rank=4, max_steps=1, init_from=str(first))
    with pytest.raises(ValueError, match="not this run's trainable parameters"):
        train(lora, docs, schema, tokenizer, log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="no finished run there"):
        train(
            _config(tiny_base_model, tmp_path / "none", init_from=str(tmp_path / "frozen" / "checkpoint")),
            docs,
            schema,
            tokenizer,
            log=lambda m: None,
        )


def test_a_run_can_start_from_an_exported_model_folder(tiny_base_model, docs, tokenizer, tmp_path):
    """--init-from a shipped low-rank model (when its run folder is gone): training starts at exactly the weights
    the engine serves for that folder, and a folder exported for another objective is refused."""
    from workers.engine.loading import load_engine_model
    from workers.training.export import export_run

    schema = get_schema("conll03")
    first = train(
        _config(tiny_base_model, tmp_path / "first", max_steps=2), docs, schema, tokenizer, log=lambda m: None
    )
    export_run(first, tmp_path / "model", rank=4, version="test", form="lowrank-int8")  # lossy on purpose
    lines: list[str] = []
    frozen = train(
        _config(tiny_base_model, tmp_path / "frozen", max_steps=1, lr=0.0, init_from=str(tmp_path / "model")),
        docs,
        schema,
        tokenizer,
        log=lines.append,
    )
    assert f"starting from the weights of {tmp_path / 'model' / 'delta_lowrank.safetensors'}" in lines
    served = dict(
        load_engine_model(tmp_path / "model", base_model=tiny_base_model, device="cpu").model.named_parameters()
    )
    started = load_file(frozen / "final.safetensors")
    assert all(torch.equal(started[n], served[n]) for n in started)
    first_weights = load_file(first / "final.safetensors")
    assert not all(torch.equal(started[n], first_weights[n]) for n in started)  # the export's, not the run's
    autoreg = _config(
        tiny_base_model, tmp_path / "autoreg", objective=AUTOREG_STRUCT, max_steps=1, init_from=str(tmp_path / "model")
    )
    with pytest.raises(ValueError, match="trained for 'padellm'"):
        train(autoreg, docs, schema, tokenizer, log=lambda m: None)
    lora = _config(
        tiny_base_model, tmp_path / "lora", method="lora", lora_rank=4, max_steps=1, init_from=str(tmp_path / "model")
    )
    with pytest.raises(ValueError, match="with --method full"):
        train(lora, docs, schema, tokenizer, log=lambda m: None)


def test_energy_allocation_spends_the_uniform_budget_where_the_delta_is():
    from workers.training.export import allocate_ranks

    spectra = {  # name: (singular values, shape); a component of an m x n delta costs m + n values
        "wide": (torch.tensor([10.0, 9.0, 8.0, 0.5]), (4, 16)),  # cost 20 per component
        "small": (torch.tensor([1.0, 0.9, 0.8, 0.7]), (4, 6)),  # cost 10
        "dead": (torch.tensor([0.01, 0.0, 0.0, 0.0]), (4, 6)),
    }
    assert allocate_ranks(spectra, 2) == {"wide": 2, "small": 2, "dead": 2}
    ranks = allocate_ranks(spectra, 2, "energy")
    budget = 2 * (20 + 10 + 10)
    spent = sum(r * sum(spectra[n][1]) for n, r in ranks.items())
    assert spent <= budget and ranks == {"wide": 3, "small": 2, "dead": 0}

    def kept(rs):
        return sum(float((spectra[n][0][:r] ** 2).sum()) for n, r in rs.items())

    assert kept(ranks) > kept(allocate_ranks(spectra, 2))
    with pytest.raises(ValueError, match="unknown rank allocation"):
        allocate_ranks(spectra, 2, "greedy")


def test_energy_allocated_export_keeps_more_in_the_same_bytes(tiny_base_model, docs, tokenizer, tmp_path):
    from workers.training.export import export_run

    run = train(_config(tiny_base_model, tmp_path / "run"), docs, get_schema("conll03"), tokenizer, log=lambda m: None)
    uniform = export_run(run, tmp_path / "uniform", rank=4, version="test", form="lowrank-int8")
    energy = export_run(run, tmp_path / "energy", rank=4, version="test", form="lowrank-int8", rank_allocation="energy")
    assert energy["delta_energy_kept"] > uniform["delta_energy_kept"]
    assert energy["weights_bytes"] <= 1.05 * uniform["weights_bytes"]  # per-tensor headers differ a little
    info = json.loads((tmp_path / "energy" / "padellm.json").read_text())
    assert info["format"] == "lowrank-int8-r4-energy" and set(info["ranks_by_projection"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    from workers.engine.loading import load_engine_model

    assert (
        load_engine_model(tmp_path / "energy", base_model=tiny_base_model, device="cpu")
        .info["format"]
        .endswith("-energy")
    )
    with pytest.raises(ValueError, match="quantised low-rank forms"):
        export_run(run, tmp_path / "lora", rank=4, version="test", rank_allocation="energy")


def test_whitened_components_keep_more_of_the_outputs_and_less_of_the_weights():
    """Eckart-Young in two norms: the plain SVD's leading components are the best rank-r approximation of the
    weights, the whitened SVD's of the outputs on inputs with the given second moments."""
    from workers.training.calibration import WHITENING_DAMPING, whitening
    from workers.training.export import _output_error, delta_components

    generator = torch.Generator().manual_seed(0)
    delta = torch.randn(24, 16, generator=generator, dtype=torch.float64)
    inputs = torch.randn(400, 16, generator=generator, dtype=torch.float64) * torch.logspace(
        1, -1, 16, dtype=torch.float64
    )
    moments = inputs.T @ inputs / len(inputs)  # a few input directions carry most of the activation
    u, s, vh = delta_components(delta, moments)
    assert torch.allclose((u * s) @ vh, delta, atol=1e-8)  # all components: the delta itself
    root, _ = whitening(moments, WHITENING_DAMPING)
    damped = root @ root  # the moments the components are optimal for (C plus the damping)
    pu, ps, pvh = delta_components(delta)
    for r in (2, 5):
        whitened, plain = (u[:, :r] * s[:r]) @ vh[:r], (pu[:, :r] * ps[:r]) @ pvh[:r]
        assert _output_error(delta - whitened, damped) < 0.8 * _output_error(delta - plain, damped)
        assert (delta - plain).norm() < (delta - whitened).norm()


def test_calibrated_export_is_whitened_and_loads_in_the_engine(tiny_base_model, docs, tokenizer, tmp_path):
    from workers.training.export import export_run

    run = train(_config(tiny_base_model, tmp_path / "run"), docs, get_schema("conll03"), tokenizer, log=lambda m: None)
    data = [str(EXAMPLES / "sample.conll")]
    with pytest.raises(ValueError, match="no calibration documents"):  # the test run names no training files
        export_run(run, tmp_path / "none", rank=4, version="test", form="lowrank-int8", calibration_docs=8)
    plain = export_run(run, tmp_path / "plain", rank=4, version="test", form="lowrank-int8")
    stats = export_run(
        run,
        tmp_path / "whitened",
        rank=4,
        version="test",
        form="lowrank-int8",
        calibration_docs=8,
        calibration_data=data,
    )
    assert stats["weights_bytes"] == plain["weights_bytes"]  # the same ranks, other components
    assert 0 < stats["output_energy_kept"] < 1 and stats["delta_energy_kept"] < plain["delta_energy_kept"]
    info = json.loads((tmp_path / "whitened" / "padellm.json").read_text())
    assert info["format"] == "lowrank-int8-r4-whitened"
    assert info["calibration"]["documents"] == len(docs) < 8  # all there are
    assert info["calibration"]["data"] == data
    assert info["calibration"]["tokens"] > 0
    # at full rank the whitened factors give back the run's weights (up to int8 rounding)
    export_run(
        run, tmp_path / "full", rank=32, version="test", form="lowrank-int8", calibration_docs=8, calibration_data=data
    )
    assert_export_matches_run(tmp_path / "full", run, tiny_base_model, tokenizer, atol=0.02)
    with pytest.raises(ValueError, match="quantised low-rank forms"):
        export_run(run, tmp_path / "lora", rank=4, version="test", calibration_docs=8, calibration_data=data)
