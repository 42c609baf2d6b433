"""Turning a training run into a shippable model folder (a PEFT LoRA adapter of at most a few tens of MB).

- LoRA runs: the trained adapter as it is, stored in bf16.
- Full fine-tuning runs: a low-rank extraction of the weight change. For every trained projection W' of
  base weight W, the delta W' - W is factorised by SVD and its top-`rank` part is kept, either
  - as a LoRA pair (B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T, scaling 1; `--format lora`, bf16), or
  - as int8 factors (`--format lowrank-int8`): U_r and V_r^T quantised to int8 with one scale per rank
    component, S_r in fp32, in `delta_lowrank.safetensors`; about twice the rank for the same bytes, which
    keeps much more of a high-rank fine-tuning delta. The engine adds U_r S_r V_r^T to the base weights.
The folder gets `padellm.json` (objective, schema, base model, how it was made), which the engine reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .loop import PROJECTIONS


def _peft_model(base_model: str, rank: int, alpha: int | None = None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    # the base weights by their plain names, taken before PEFT wraps the projections (and renames them)
    weights = {n: p.detach().clone() for n, p in base.named_parameters()}
    return get_peft_model(base, LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=0.0, target_modules=list(PROJECTIONS),
                                           bias="none", task_type="CAUSAL_LM")), weights


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


def _quantize(matrix: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per slice along `dim` (per rank component)."""
    scale = matrix.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(matrix / scale).clamp(-127, 127).to(torch.int8), scale.squeeze(dim).float()


def export_full_as_int8_lowrank(base_model: str, weights: Path, rank: int, output: Path, info: dict) -> dict:
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    trained = load_file(weights)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    base_weights = dict(base.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    energy_kept, energy_total = 0.0, 0.0
    for name, new in trained.items():
        delta = (new - base_weights[name].detach()).double()
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        r = min(rank, len(s))
        u_q, u_scale = _quantize(u[:, :r].float(), dim=0)  # one scale per column (component)
        v_q, v_scale = _quantize(vh[:r].float(), dim=1)  # one scale per row (component)
        key = name.removesuffix(".weight")
        tensors.update({f"{key}.u": u_q.contiguous(), f"{key}.u_scale": u_scale, f"{key}.s": s[:r].float(),
                        f"{key}.vh": v_q.contiguous(), f"{key}.vh_scale": v_scale})
        approx = (u_q.double() * u_scale.double()) @ torch.diag(s[:r]) @ (v_q.double() * v_scale.double()[:, None])
        energy_total += float(delta.pow(2).sum())
        energy_kept += float(delta.pow(2).sum() - (delta - approx).pow(2).sum())
    output.mkdir(parents=True, exist_ok=True)
    save_file(tensors, output / "delta_lowrank.safetensors")
    size = (output / "delta_lowrank.safetensors").stat().st_size
    stats = {"rank": rank, "delta_energy_kept": energy_kept / energy_total if energy_total else 1.0}
    (output / "padellm.json").write_text(json.dumps(
        {**info, "format": f"lowrank-int8-r{rank}", "weights_bytes": size, **stats}, indent=2, sort_keys=True))
    return stats


def apply_int8_lowrank(model: torch.nn.Module, path: Path) -> None:
    """Add the stored low-rank deltas to a model's weights (the inverse of `export_full_as_int8_lowrank`)."""
    tensors = load_file(path)
    parameters = dict(model.named_parameters())
    keys = {k.rsplit(".", 1)[0] for k in tensors}
    with torch.no_grad():
        for key in keys:
            weight = parameters[f"{key}.weight"]
            u = tensors[f"{key}.u"].float() * tensors[f"{key}.u_scale"][None, :]
            vh = tensors[f"{key}.vh"].float() * tensors[f"{key}.vh_scale"][:, None]
            weight += ((u * tensors[f"{key}.s"][None, :]) @ vh).to(weight.dtype)


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


def export_run(run: Path, output: Path, rank: int, version: str, form: str = "lora") -> dict:
    config = json.loads((run / "train_config.json").read_text())
    final = json.loads((run / "final.json").read_text()) if (run / "final.json").exists() else {}
    weights = run / "final.safetensors"
    if not weights.exists():
        weights = run / "checkpoint" / "trainable.safetensors"
        final = {**final, "note": "exported from the latest checkpoint, training not finished"}
    info = {
        "objective": config["objective"], "schema": config["schema"], "method": config["method"],
        "base_model_name": Path(config["base_model"]).name, "version": version,
        "training": {k: config[k] for k in ("epochs", "lr", "row_tokens", "rows_per_step", "grad_accum", "seed",
                                            "warmup_steps", "bf16", "lora_rank") if k in config} | final,
    }
    if config["method"] == "full" and form == "lowrank-int8":
        return export_full_as_int8_lowrank(config["base_model"], weights, rank, output, info)
    if config["method"] == "full":
        return export_full_as_lora(config["base_model"], weights, rank, output, info)
    return export_lora(config["base_model"], weights, config["lora_rank"], config["lora_alpha"], output, info)
