"""How close int8 stays to fp32 on the shipped model: which linear layers lose the F1, and whether SmoothQuant's
scale migration (Xiao et al., 2023) recovers it. Every variant decodes the same dev sentences, interleaved.

    .venv/bin/python experiments/int8-accuracy/variants.py --sample 150 --seed 0 [--data .../valid.txt]
        [--unit document]
"""

import argparse
import copy
import json
import warnings

import torch

from padellm_ner.core import get_schema
from padellm_ner.data.formats import read_corpus
from padellm_ner.data.selection import select_documents
from padellm_ner.data.units import in_unit
from workers.engine.loading import load_engine_model
from workers.engine.padellm import PadellmEngine
from workers.evaluation import differing_documents, run_modes

warnings.simplefilter("ignore")
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic  # noqa: E402


def calibrate(engine_model, documents, schema) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |activation| every linear layer of the decoder sees on `documents`."""
    peaks: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in engine_model.model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("model.layers"):

            def hook(_m, inputs, _o, name=name):
                x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(0)
                peaks[name] = torch.maximum(peaks[name], x) if name in peaks else x

            hooks.append(module.register_forward_hook(hook))
    engine = PadellmEngine(engine_model)
    for document in documents:
        engine.recognize(document.text, schema)
    for h in hooks:
        h.remove()
    return peaks


def smooth(network, peaks, alpha: float, o_proj: bool) -> None:
    """Move activation outliers into the weights: X W^T = (X / s)(W s)^T, 1/s folded into the op before."""
    cfg = network.config
    groups = cfg.num_attention_heads // cfg.num_key_value_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        for i, layer in enumerate(network.model.layers):
            p = f"model.layers.{i}"
            attn, mlp = layer.self_attn, layer.mlp

            def scales(act, linears):
                w = torch.stack([lin.weight.abs().amax(0) for lin in linears]).amax(0)
                return (act.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)

            s = scales(peaks[f"{p}.self_attn.q_proj"], [attn.q_proj, attn.k_proj, attn.v_proj])
            layer.input_layernorm.weight.div_(s)
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
                lin.weight.mul_(s)
            s = scales(peaks[f"{p}.mlp.gate_proj"], [mlp.gate_proj, mlp.up_proj])
            layer.post_attention_layernorm.weight.div_(s)
            for lin in (mlp.gate_proj, mlp.up_proj):
                lin.weight.mul_(s)
            s = scales(peaks[f"{p}.mlp.down_proj"], [mlp.down_proj])
            mlp.up_proj.weight.div_(s[:, None])
            mlp.down_proj.weight.mul_(s)
            if o_proj:
                s = scales(peaks[f"{p}.self_attn.o_proj"], [attn.o_proj])  # per q-head channel
                kv = s.view(cfg.num_key_value_heads, groups, head_dim).amax(1)  # one scale per v channel
                attn.v_proj.weight.div_(kv.reshape(-1)[:, None])
                attn.o_proj.weight.mul_(kv[:, None, :].expand(-1, groups, -1).reshape(-1))


def per_row(network) -> None:
    """Each row of a batched input quantized with its own activation scale (a row: one packed prefill row or one
    decoding sequence) instead of one scale for the whole forward: the quantized layers called row by row."""
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    for module in network.modules():
        if isinstance(module, QuantizedLinear):

            def forward(x, module=module, whole=module.forward):
                if x.dim() == 3 and x.shape[0] > 1:
                    return torch.cat([whole(x[row : row + 1]) for row in range(x.shape[0])])
                return whole(x)

            module.forward = forward


def quantized(network, skip: tuple[str, ...] = (), head: bool = True):
    # every linear layer (lm_head too), or only the decoder's (lm_head kept in fp32)
    spec = {torch.nn.Linear: per_channel_dynamic_qconfig} if head else {"model.layers": per_channel_dynamic_qconfig}
    q = quantize_dynamic(network, spec, dtype=torch.qint8)
    for name in skip:  # put named projections back in fp32
        for i, layer in enumerate(q.model.layers):
            parent_name, attr = name.split(".")
            parent = getattr(layer, parent_name)
            setattr(parent, attr, getattr(getattr(network.model.layers[i], parent_name), attr))
    return q


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/conll2003/original/valid.txt")
    parser.add_argument("--calibration", default="../shared/datasets/conll2003/original/train.txt")
    parser.add_argument("--sample", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unit", choices=["sentence", "document"], default="sentence")
    parser.add_argument("--variants", default="fp32,int8,int8-head-fp32,smooth0.5,smooth0.5-o,smooth0.8-o")
    parser.add_argument("--output")
    args = parser.parse_args()
    torch.set_num_threads(2)
    schema = get_schema("conll03")
    documents = select_documents(in_unit(read_corpus(args.data).documents, args.unit), None, args.sample, args.seed)
    base = load_engine_model(dtype="float32")
    calibration = select_documents(read_corpus(args.calibration).documents, None, 64, 1)
    peaks = calibrate(base, calibration, schema)
    recognizers = {}
    for variant in args.variants.split(","):
        model = copy.copy(base)
        network = copy.deepcopy(base.model)
        if variant == "fp32":
            pass
        elif variant == "int8":
            network = quantized(network)
        elif variant == "int8-head-fp32":
            network = quantized(network, head=False)
        elif variant == "int8-down-fp32":
            network = quantized(network, skip=("mlp.down_proj",))
        elif variant.startswith("smooth"):
            alpha, *flags = variant.removeprefix("smooth").split("-")  # e.g. smooth0.8-o-down, smooth0.7-o-rows
            smooth(network, peaks, float(alpha), "o" in flags)
            network = quantized(network, skip=("mlp.down_proj",) if "down" in flags else ())
            if "rows" in flags:
                per_row(network)
        else:
            raise SystemExit(f"unknown variant {variant}")
        model.model = network.eval()
        engine = PadellmEngine(model)
        recognizers[variant] = lambda d, engine=engine: engine.recognize(d.text, schema)
    runs = run_modes(recognizers, documents, schema)
    differing = differing_documents(runs, "fp32")
    rows = {}
    for name, run in runs.items():
        s = run.summary()
        rows[name] = {
            "micro_f1": round(s["micro_f1"] * 100, 2),
            "latency_ms_mean": round(s["latency_ms_mean"], 1),
            "differ_from_fp32": differing.get(name, 0),
        }
    print(f"{'variant':<18}{'F1':>8}{'ms':>9}{'differ':>8}")
    for name, r in rows.items():
        print(f"{name:<18}{r['micro_f1']:>8.2f}{r['latency_ms_mean']:>9.1f}{r['differ_from_fp32']:>8}")
    if args.output:
        json.dump(
            {"data": args.data, "unit": args.unit, "sample": args.sample, "seed": args.seed, "variants": rows},
            open(args.output, "w"),
            indent=2,
        )


if __name__ == "__main__":
    main()
