"""Second moments of every trained projection's inputs, measured on a run's own training data.

A plain SVD of a weight delta keeps the components with the most squared Frobenius norm. What decoding needs
kept is the change of the layer's outputs on the inputs it actually sees: ||(dW - dW_r) x|| over tokens x. With
C = E[x x^T] (the projection's input second moments) that error is ||(dW - dW_r) C^(1/2)||_F, so an SVD of
dW C^(1/2) gives the best rank-r approximation in that norm (the "truncation-aware whitening" of SVD-LLM,
Wang et al. 2024). This module measures C for every projection by running the fine-tuned model over a seeded
sample of the run's training documents, built and packed exactly as training builds them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from padellm_ner.core import get_schema
from padellm_ner.data import read_corpus

from ..engine.weights import PROJECTIONS
from .examples import tokenize_document
from .packing import collate, pack

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Added to C's eigenvalues, times their mean. On the 4-epoch PaDeLLM run 1e-3, 1e-2 and 1e-1 left the same output error
# on held-out calibration documents (within 2 %); some damping is needed because C is near singular.
WHITENING_DAMPING = 1e-2

# Projections of one decoder block that read the same tensor: q/k/v read the attention input, gate/up the MLP
# input, so one hook per tensor measures all of them.
READS_INPUT_OF = {"k_proj": "q_proj", "v_proj": "q_proj", "up_proj": "gate_proj"}
MEASURED = tuple(p for p in PROJECTIONS if p not in READS_INPUT_OF)


def calibration_rows(config: dict, tokenizer, documents: int, seed: int, data: list[str] | None = None):
    """Packed rows of a seeded sample of `documents` documents (all, if there are fewer) from `data` (default: the
    run's training files), tokenized for the run's objective and packed into its row length (`config`: the run's
    `train_config.json`); and how many documents they hold."""
    corpus = [d for path in (data or config["data"]) for d in read_corpus(path).documents]
    if not corpus:
        raise ValueError(
            f"no calibration documents: the run names no training files ({config['output']}); give --calibration-data"
        )
    chosen = random.Random(seed).sample(corpus, min(documents, len(corpus)))
    schema = get_schema(config["schema"])
    tokenized = [tokenize_document(tokenizer, d, schema, config["objective"]) for d in chosen]
    return pack(tokenized, config["row_tokens"], seed=seed), len(chosen)


@torch.no_grad()
def input_moments(
    model: PreTrainedModel, rows, pad_id: int, rows_per_batch: int = 8, progress=None
) -> tuple[dict[str, torch.Tensor], int]:
    """({weight name: E[x x^T]} (float64) of every projection's inputs over the rows' real (non-padding) tokens,
    the number of those tokens)."""
    sums: dict[str, torch.Tensor] = {}
    tokens = 0
    valid: torch.Tensor | None = None  # [batch, length] mask of the current batch's real tokens

    def hook_for(name: str):
        def hook(_module, inputs):
            x = inputs[0][valid].float()
            product = (x.T @ x).double()  # fp32 matmul (fast), summed in fp64 across batches
            sums[name] = sums[name] + product if name in sums else product

        return hook

    handles = [
        module.register_forward_pre_hook(hook_for(f"{name}.weight"))
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in MEASURED
    ]
    try:
        for start in range(0, len(rows), rows_per_batch):
            chunk = rows[start : start + rows_per_batch]
            batch = collate(chunk, pad_id)
            lengths = torch.tensor([len(r) for r in chunk])
            valid = torch.arange(batch["input_ids"].shape[1])[None, :] < lengths[:, None]
            tokens += int(valid.sum())
            model.model(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                attention_mask=batch["attention_mask"],
                use_cache=False,
            )
            if progress:
                progress(len(chunk))
    finally:
        for handle in handles:
            handle.remove()
    moments = {name: total / tokens for name, total in sums.items()}
    for name in list(moments):
        prefix, projection, _ = name.rsplit(".", 2)
        for reader, source in READS_INPUT_OF.items():
            if projection == source:
                moments[f"{prefix}.{reader}.weight"] = moments[name]
    return moments, tokens


def run_input_moments(
    config: dict, weights: Path, documents: int, seed: int = 0, data: list[str] | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """The input moments of a run's fine-tuned model (its base model + `weights`; `config`: the run's
    `train_config.json`) on `documents` calibration documents, and a record of what they were measured on."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config["base_model"])
    model = AutoModelForCausalLM.from_pretrained(config["base_model"], dtype=torch.float32)
    model.load_state_dict(load_file(weights), strict=False)
    rows, chosen = calibration_rows(config, tokenizer, documents, seed, data)
    with tqdm(total=len(rows), desc="export: calibration", unit="row", disable=None) as bar:
        moments, tokens = input_moments(model.eval(), rows, tokenizer.pad_token_id or 0, progress=bar.update)
    return moments, {
        "documents": chosen,
        "seed": seed,
        "data": list(data or config["data"]),
        "tokens": tokens,
        "damping": WHITENING_DAMPING,
    }


def whitening(moments: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(C^(1/2), C^(-1/2)) of a second-moment matrix, with `damping` times its mean eigenvalue added (the
    inputs' outlier dimensions leave C badly conditioned)."""
    values, vectors = torch.linalg.eigh(moments)
    values = values.clamp(min=0) + damping * values.clamp(min=0).mean()
    root = (vectors * values.sqrt()) @ vectors.T
    inverse_root = (vectors * values.rsqrt()) @ vectors.T
    return root, inverse_root
