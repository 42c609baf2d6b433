"""Which base reads Chinese better: SmolLM2-135M or Gemma 3 270M, before any training.

For each base, on the Resume dev set's PaDeLLM examples (`padellm-ner data reformulate`): prompt tokens per
character of the sentence, and the zero-shot NLL of the sentence per character (how well the pretrained model
already predicts Chinese text, in nats, comparable across tokenizers).

    .venv/bin/padellm-ner data reformulate ../shared/datasets/resume/original/dev.char.bmes --schema resume \
        --output /tmp/resume-dev.jsonl
    .venv/bin/python experiments/multilingual-base/measure.py /tmp/resume-dev.jsonl BASE_DIR [BASE_DIR ...]
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(examples_path: str, *bases: str) -> None:
    sentences = []
    for line in open(examples_path, encoding="utf-8"):
        prompt = json.loads(line)["prompt"]
        text = prompt.split("\n", 2)[1]
        if text not in sentences:
            sentences.append(text)
    sentences = sentences[:200]
    chars = sum(len(s) for s in sentences)
    rows = []
    for base in bases:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
        tokens = nll = 0.0
        with torch.no_grad():
            for sentence in sentences:
                ids = tokenizer(sentence, return_tensors="pt").input_ids
                if ids[0, 0] != tokenizer.bos_token_id and tokenizer.bos_token_id is not None:
                    ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)
                tokens += ids.shape[1] - 1
                out = model(ids, labels=ids)
                nll += out.loss.item() * (ids.shape[1] - 1)
        rows.append(
            {
                "base": Path(base).name,
                "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                "tokens_per_char": round(tokens / chars, 3),
                "nll_per_char": round(nll / chars, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{len(sentences)} Resume dev sentences, {chars} characters")
    print(f"{'base':<28}{'params M':>10}{'tok/char':>10}{'NLL/char':>10}")
    for r in rows:
        print(f"{r['base']:<28}{r['parameters_m']:>10}{r['tokens_per_char']:>10}{r['nll_per_char']:>10}")


if __name__ == "__main__":
    main(*sys.argv[1:])
