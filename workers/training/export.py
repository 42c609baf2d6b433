"""Turning a training run into a shippable model folder (a PEFT LoRA adapter of at most a few tens of MB).

- LoRA runs: the trained adapter as it is, stored in bf16.
- Full fine-tuning runs: a low-rank extraction of the weight change. For every trained projection W' of
  base weight W, the delta W' - W is factorised by SVD and its top-`rank` part is kept, either
  - as a LoRA pair (B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T, scaling 1; `--form lora`, bf16), or
  - as quantised factors (`--form lowrank-int8`: int8 with one scale per rank component; `--form
    lowrank-int4`: int4, two per byte, with one scale per 64 values): U_r and V_r^T quantised, S_r in fp32,
    in `delta_lowrank.safetensors`; two (int8) or about four (int4) times the rank of bf16 LoRA for the same
    bytes, which keeps much more of a high-rank fine-tuning delta. The engine adds U_r S_r V_r^T to the base
    weights.
  With `--calibration-docs N` the quantised forms are activation-aware: each delta's components come from an SVD
  of delta C^(1/2), C its projection's input second moments on N of the run's training documents
  (`calibration.py`), so they keep the change of the layer's outputs rather than of its weights; V_r^T is stored
  as V_r^T C^(-1/2) and the engine needs nothing new. The ranks stay those of the plain spectra. (On the shipped
  run it kept far more of the layers' output change yet scored lower F1 than the plain form: the model card.)
The folder gets `padellm.json` (objective, schema, base model, how it was made), which the engine reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from ..engine.weights import LOWRANK_DELTA, PROJECTIONS, dequantize, quantize
from .loop import Checkpoints

# form -> (bits, values per scale; None: one scale per rank component)
QUANTIZED_FORMS = {"lowrank-int8": (8, None), "lowrank-int4": (4, 64)}


def _peft_model(base_model: str, rank: int, alpha: int | None = None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    # the base weights by their plain names, taken before PEFT wraps the projections (and renames them)
    weights = {n: p.detach().clone() for n, p in base.named_parameters()}
    return get_peft_model(
        base,
        LoraConfig(
            r=rank,
            lora_alpha=alpha or rank,
            lora_dropout=0.0,
            target_modules=list(PROJECTIONS),
            bias="none",
            task_type="CAUSAL_LM",
        ),
    ), weights


def low_rank_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with B @ A the best rank-`rank` approximation of delta (Eckart-Young)."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    root = s[:rank].sqrt()
    a, b = root[:, None] * vh[:rank], u[:, :rank] * root[None, :]
    if len(root) < rank:  # a matrix narrower than the rank: the missing components are zero
        a = torch.cat([a, a.new_zeros(rank - len(root), a.shape[1])])
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - len(root))], dim=1)
    return a.float(), b.float()


def export_full_as_lora(base_model: str, weights: Path, rank: int, output: Path, info: dict) -> dict:
    trained = load_file(weights)
    peft_model, base_weights = _peft_model(base_model, rank)
    params = dict(peft_model.named_parameters())
    energy_kept, energy_total = 0.0, 0.0
    for name, new in trained.items():
        # trained names are the plain model's: model.layers.N.self_attn.q_proj.weight
        old = base_weights[name]
        delta = new - old
        a, b = low_rank_factors(delta, rank)
        prefix = "base_model.model." + name.removesuffix(".weight")
        with torch.no_grad():
            params[f"{prefix}.lora_A.default.weight"].copy_(a)
            params[f"{prefix}.lora_B.default.weight"].copy_(b)
        energy_total += float(delta.double().pow(2).sum())
        energy_kept += float((b.double() @ a.double()).pow(2).sum())
    stats = {"rank": rank, "delta_energy_kept": energy_kept / energy_total if energy_total else 1.0}
    _save(peft_model, output, {**info, "format": f"lora-from-full-svd-r{rank}", **stats})
    return stats


RANK_ALLOCATIONS = ("uniform", "energy")


def allocate_ranks(
    spectra: dict[str, tuple[torch.Tensor, tuple[int, int]]], rank: int, allocation: str = "uniform"
) -> dict[str, int]:
    """How many SVD components each delta keeps, given {name: (singular values, (rows, cols))}.

    `uniform`: `rank` each (fewer where a matrix is narrower). `energy`: the same number of stored values
    (a component of an m x n delta stores m + n), spent where they keep the most squared Frobenius norm: the
    components with the largest s^2 / (m + n) across all deltas. Within one delta that ratio falls with the
    index, so each keeps a leading block of its components, as the engine expects."""
    uniform = {name: min(rank, len(s)) for name, (s, _) in spectra.items()}
    if allocation == "uniform":
        return uniform
    if allocation != "energy":
        raise ValueError(f"unknown rank allocation {allocation!r}; expected one of {RANK_ALLOCATIONS}")
    budget = sum(r * sum(shape) for r, (_, shape) in zip(uniform.values(), spectra.values()))
    candidates = sorted(
        ((float(value) ** 2 / sum(shape), name) for name, (s, shape) in spectra.items() for value in s),
        reverse=True,
    )
    ranks = dict.fromkeys(spectra, 0)
    for _, name in candidates:
        cost = sum(spectra[name][1])
        if cost > budget:
            continue  # a smaller matrix's component may still fit
        ranks[name] += 1
        budget -= cost
    return ranks


def _output_error(error: torch.Tensor, moments: torch.Tensor) -> float:
    """E||error x||^2 over inputs x with second moments E[x x^T] = moments."""
    return float(torch.einsum("ij,jk,ik->", error, moments, error))


def delta_components(delta: torch.Tensor, moments: torch.Tensor | None = None):
    """(U, S, V^T) with delta = U diag(S) V^T and the leading r components the best rank-r approximation: in the
    Frobenius norm (moments None), or of the outputs on inputs with second moments `moments` (the SVD of
    delta C^(1/2), V^T taken back through C^(-1/2))."""
    if moments is None:
        return torch.linalg.svd(delta, full_matrices=False)
    from .calibration import WHITENING_DAMPING, whitening

    root, inverse_root = whitening(moments.to(delta.dtype), WHITENING_DAMPING)
    u, s, vh = torch.linalg.svd(delta @ root, full_matrices=False)
    return u, s, vh @ inverse_root


def export_full_as_quantized_lowrank(
    base_model: str,
    weights: Path,
    rank: int,
    output: Path,
    info: dict,
    bits: int = 8,
    group: int | None = None,
    allocation: str = "uniform",
    moments: dict[str, torch.Tensor] | None = None,
) -> dict:
    """The leading SVD components of every weight delta (`rank` each, or as `allocate_ranks` spreads the same
    budget), U_r and V_r^T quantised (int8 with one scale per component, or int4 with a scale per `group`
    values), S_r in fp32, in `delta_lowrank.safetensors`. With `moments` ({weight name: E[x x^T] of its
    inputs}, `calibration.input_moments`) the components are those of the whitened delta (module docstring)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    trained = load_file(weights)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    base_weights = dict(base.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    energy_kept, energy_total, output_kept, output_total = 0.0, 0.0, 0.0, 0.0

    def delta_of(name: str) -> torch.Tensor:
        return (trained[name] - base_weights[name].detach()).double()

    # two passes, so that one delta's factors are in memory at a time (all of them: gigabytes): the singular
    # values first, to spread the ranks (by the plain spectra: whitened ones are in each layer's own output
    # units), then each delta's components, quantised and dropped
    spectra = {
        name: (torch.linalg.svdvals(delta_of(name)), (trained[name].shape[0], trained[name].shape[1]))
        for name in tqdm(trained, desc="export: spectra of the deltas", unit="matrix", disable=None)
    }
    ranks = allocate_ranks(spectra, rank, allocation)
    for name in tqdm(trained, desc="export: SVD of the deltas", unit="matrix", disable=None):
        delta, r = delta_of(name), ranks[name]
        energy_total += float(delta.pow(2).sum())
        delta_output = _output_error(delta, moments[name]) if moments is not None else 0.0
        output_total += delta_output
        if r == 0:
            continue  # nothing kept of this delta: no tensors, the engine leaves the base weight as it is
        u, s, vh = delta_components(delta, None if moments is None else moments[name])
        u_q, u_scale = quantize(u[:, :r].T.float(), bits, group)  # stored as rows: one component per row
        v_q, v_scale = quantize(vh[:r].float(), bits, group)
        key = name.removesuffix(".weight")
        tensors.update(
            {
                f"{key}.u": u_q,
                f"{key}.u_scale": u_scale.half(),
                f"{key}.s": s[:r].float(),
                f"{key}.vh": v_q,
                f"{key}.vh_scale": v_scale.half(),
            }
        )
        approx = (
            dequantize(u_q, u_scale, bits, group, delta.shape[0]).double().T
            @ torch.diag(s[:r])
            @ dequantize(v_q, v_scale, bits, group, delta.shape[1]).double()
        )
        energy_kept += float(delta.pow(2).sum() - (delta - approx).pow(2).sum())
        if moments is not None:
            output_kept += delta_output - _output_error(delta - approx, moments[name])
    output.mkdir(parents=True, exist_ok=True)
    form = f"lowrank-int{bits}" + (f"-g{group}" if group else "") + f"-r{rank}"
    if allocation != "uniform":
        form += f"-{allocation}"
    if moments is not None:
        form += "-whitened"
    save_file(
        tensors,
        output / LOWRANK_DELTA,
        metadata={"bits": str(bits), "group": str(group or 0), "layout": "components-as-rows"},
    )
    size = (output / LOWRANK_DELTA).stat().st_size
    stats: dict[str, object] = {
        "rank": rank,
        "bits": bits,
        "group": group,
        "weights_bytes": size,
        "rank_allocation": allocation,
        "delta_energy_kept": energy_kept / energy_total if energy_total else 1.0,
    }
    if moments is not None:  # the share of the deltas' effect on the calibration inputs that the export keeps
        stats["output_energy_kept"] = output_kept / output_total if output_total else 1.0
    if allocation != "uniform":
        by_projection: dict[str, list[int]] = {}
        for name, r in ranks.items():
            by_projection.setdefault(name.rsplit(".", 2)[-2], []).append(r)
        stats["ranks_by_projection"] = {
            p: {"min": min(v), "mean": round(sum(v) / len(v), 1), "max": max(v)} for p, v in by_projection.items()
        }
    (output / "padellm.json").write_text(json.dumps({**info, "format": form, **stats}, indent=2, sort_keys=True))
    return stats


def export_lora(base_model: str, weights: Path, rank: int, alpha: int, output: Path, info: dict) -> dict:
    trained = load_file(weights)
    peft_model, _ = _peft_model(base_model, rank, alpha)
    missing = set(trained) - set(dict(peft_model.named_parameters()))
    if missing:
        raise RuntimeError(f"run weights do not match a rank-{rank} LoRA: {sorted(missing)[:3]}")
    peft_model.load_state_dict(trained, strict=False)
    _save(peft_model, output, {**info, "format": f"lora-r{rank}"})
    return {"rank": rank}


def _save(peft_model, output: Path, info: dict) -> None:
    output.mkdir(parents=True, exist_ok=True)
    for parameter in peft_model.parameters():
        parameter.data = parameter.data.to(torch.bfloat16)
    peft_model.save_pretrained(output, safe_serialization=True)
    config_path = output / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = info.get("base_model_name", "SmolLM2-135M-Instruct")
    config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
    size = (output / "adapter_model.safetensors").stat().st_size
    (output / "padellm.json").write_text(json.dumps({**info, "adapter_bytes": size}, indent=2, sort_keys=True))


# What a model card needs to say how the shipped weights were trained: the schedule, the batch, and the data
# (which files, which documents were repeated, and the run it continued from, if any); not where this run and the
# base model sat, nor its time budget.
TRAINING_KEYS = (
    "data",
    "epochs",
    "lr",
    "min_lr_ratio",
    "warmup_steps",
    "weight_decay",
    "row_tokens",
    "rows_per_step",
    "grad_accum",
    "seed",
    "bf16",
    "lora_rank",
    "oversample_min_mentions",
    "oversample_times",
    "mention_replacement_copies",
    "init_from",
    "max_steps",
)


def _training_record(config: dict) -> dict:
    skip = {"epochs" if config.get("max_steps") else "max_steps"}  # the one that did not set the schedule's length
    if config["method"] == "full":
        skip.add("lora_rank")  # a training setting only for LoRA; a full fine-tune's export rank is in its form
    return {k: config[k] for k in TRAINING_KEYS if k in config and k not in skip}


def export_run(
    run: Path,
    output: Path,
    rank: int,
    version: str,
    form: str = "lora",
    rank_allocation: str = "uniform",
    calibration_docs: int = 0,
    calibration_seed: int = 0,
    calibration_data: list[str] | None = None,
) -> dict:
    config = json.loads((run / "train_config.json").read_text())
    final = json.loads((run / "final.json").read_text()) if (run / "final.json").exists() else {}
    weights = run / "final.safetensors"
    if not weights.exists():
        checkpoints = Checkpoints(run)
        weights = checkpoints.weights
        # a model taken from an unfinished run says how far the run had come, as a finished one does
        state = checkpoints.state()
        final = {
            **final,
            "steps": state["step"],
            "trained_s": state["elapsed_s"],
            "note": "exported from the latest checkpoint, training not finished",
        }
    info = {
        "objective": config["objective"],
        "schema": config["schema"],
        "method": config["method"],
        "base_model_name": Path(config["base_model"]).name,
        "version": version,
        "training": _training_record(config) | final,
    }
    if config["method"] == "full" and form in QUANTIZED_FORMS:
        bits, group = QUANTIZED_FORMS[form]
        moments = None
        if calibration_docs:
            from .calibration import run_input_moments

            moments, info["calibration"] = run_input_moments(
                config, weights, calibration_docs, calibration_seed, calibration_data
            )
        return export_full_as_quantized_lowrank(
            config["base_model"], weights, rank, output, info, bits, group, rank_allocation, moments
        )
    if rank_allocation != "uniform" or calibration_docs:
        raise ValueError(
            "--rank-allocation and --calibration-docs apply to the quantised low-rank forms of full fine-tuning runs"
        )
    if config["method"] == "full":
        return export_full_as_lora(config["base_model"], weights, rank, output, info)
    return export_lora(config["base_model"], weights, config["lora_rank"], config["lora_alpha"], output, info)


SERVED_FORM = "merged"  # padellm.json "format" of a folder written by export_serving_folder


def export_serving_folder(model: Path | None, output: Path, base_model: str | None = None) -> dict:
    """The model as a plain transformers folder that a model server loads (vLLM, TGI): the base model with the
    folder's weights merged in, fp32 safetensors (the server casts to the precision it runs), the tokenizer and
    generation config, and the model's `padellm.json` (same name and version, so records name the same model
    whichever backend decoded them). The engine loads such a folder too (`--model`)."""
    import shutil
    import tempfile

    from ..engine.loading import load_engine_model

    engine_model = load_engine_model(model, base_model=base_model, device="cpu", dtype="float32")
    if model is None or not (Path(model) / "padellm.json").exists():
        raise ValueError(f"{model}: not a model folder (no padellm.json)")
    info = json.loads((Path(model) / "padellm.json").read_text())
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}-"))
    network: Any = engine_model.model  # a transformers PreTrainedModel (the engine types it as a torch Module)
    network.save_pretrained(staging, safe_serialization=True)
    engine_model.tokenizer.save_pretrained(staging)
    served = {
        **info,
        "name": engine_model.info["name"],
        "format": SERVED_FORM,
        "merged_from": {"format": info.get("format"), "base_model_name": info.get("base_model_name")},
    }
    (staging / "padellm.json").write_text(json.dumps(served, indent=2, sort_keys=True))
    for path in [staging, *staging.rglob("*")]:  # a server image runs as another user than the one exporting
        path.chmod(0o755 if path.is_dir() else 0o644)
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
    size = sum(f.stat().st_size for f in output.iterdir())
    return {"output": str(output), "name": served["name"], "version": served.get("version"), "bytes": size}
