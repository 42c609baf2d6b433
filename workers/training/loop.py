"""The training loop: one readable loop, explicit data flow (nanoGPT style).

    documents -> tokenized (shared prefix + branches) -> packed rows with block masks -> batches
    -> forward (hidden states) -> lm_head on target positions only -> cross-entropy -> AdamW step

Full fine-tuning trains the linear layers of every decoder block (embeddings, the tied lm_head and norms
stay frozen, so the whole change is a set of matrix deltas that a low-rank extraction can ship); LoRA trains
adapters on the same seven projections. Checkpoints (trainable weights, optimizer, step, RNG) are written
every `checkpoint_minutes` and at the end, and a run resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from padellm_ner.core import LabelSchema

from ..engine.weights import LOWRANK_DELTA, PROJECTIONS, apply_quantized_lowrank, lowrank_delta_targets
from .augment import MentionReplacement, augmented_documents
from .examples import TokenizedDocument, tokenize_document
from .packing import IGNORE, collate, pack
from .sampling import Oversampling, epoch_documents


@dataclass
class TrainConfig:
    base_model: str
    output: str
    objective: str = "padellm"
    method: str = "full"  # full | lora
    lora_rank: int = 32
    lora_alpha: int = 64
    epochs: float = 1.0
    max_steps: int | None = None
    row_tokens: int = 256
    rows_per_step: int = 8
    grad_accum: int = 1
    lr: float = 1.5e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.0
    bf16: bool = True
    seed: int = 1234
    time_budget_minutes: float | None = None
    checkpoint_minutes: float = 10.0
    oversample_min_mentions: int = 0  # documents with a label of this many mentions or more ... (0: off)
    oversample_times: int = 1  # ... appear this many times per epoch
    mention_replacement_copies: int = 0  # copies of the corpus per epoch with mentions swapped (augment.py; 0: off)
    schema: str = ""
    data: list[str] = field(default_factory=list)
    # Start from another finished run's trained weights instead of the base model's (a continuation with a
    # fresh schedule); the base model stays the reference that an export's deltas are taken against.
    init_from: str | None = None


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def load_model(base_model: str, config: TrainConfig):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32, attn_implementation="sdpa")
    for parameter in model.parameters():
        parameter.requires_grad = False
    if config.method == "full":
        for name, parameter in model.named_parameters():
            if ".layers." in name and name.rsplit(".", 2)[-2] in PROJECTIONS:
                parameter.requires_grad = True
        return model, model
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(PROJECTIONS),
                bias="none",
                task_type="CAUSAL_LM",
            ),
        )
        return peft_model, peft_model.get_base_model()
    raise ValueError(f"unknown training method {config.method!r}; expected full or lora")


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def names_that_differ(weights: dict[str, torch.Tensor], model) -> list[str]:
    """The names in `weights` or among the model's trainable parameters but not in both (sorted)."""
    return sorted(set(weights) ^ {n for n, p in model.named_parameters() if p.requires_grad})


def batch_loss(causal_lm, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over target positions; the vocabulary projection runs on those positions only."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = causal_lm.model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=batch["attention_mask"],
            use_cache=False,
        ).last_hidden_state
        selected = batch["targets"] != IGNORE
        logits = causal_lm.lm_head(hidden[selected])
    targets = batch["targets"][selected]
    return torch.nn.functional.cross_entropy(logits.float(), targets), int(targets.numel())


class Checkpoints:
    def __init__(self, run: Path):
        self.run = run
        self.path = run / "checkpoint"

    @property
    def weights(self) -> Path:
        return self.path / "trainable.safetensors"

    def exists(self) -> bool:
        return (self.path / "state.json").exists()

    def state(self) -> dict:
        """Where the latest checkpoint stands: step, epoch, position (row) and elapsed_s (training seconds)."""
        return json.loads((self.path / "state.json").read_text())

    def save(self, model, optimizer, step: int, epoch: int, position: int, elapsed: float) -> None:
        staging = self.run / "checkpoint.tmp"
        staging.mkdir(parents=True, exist_ok=True)
        save_file(trainable_state(model), staging / self.weights.name)
        torch.save(
            {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()},
            staging / "optimizer.pt",
        )
        (staging / "state.json").write_text(
            json.dumps({"step": step, "epoch": epoch, "position": position, "elapsed_s": elapsed})
        )
        if self.path.exists():
            old = self.run / "checkpoint.old"
            self.path.rename(old)
            staging.rename(self.path)
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        else:
            staging.rename(self.path)

    def load(self, model, optimizer) -> dict:
        weights = load_file(self.weights)
        missing = names_that_differ(weights, model)
        if missing:
            raise RuntimeError(f"checkpoint does not match the model's trainable weights: {missing[:4]}")
        model.load_state_dict(weights, strict=False)
        extra = torch.load(self.path / "optimizer.pt", weights_only=False)
        optimizer.load_state_dict(extra["optimizer"])
        torch.set_rng_state(extra["torch_rng"])
        random.setstate(extra["python_rng"])
        return self.state()


def init_weights(model, source: str, objective: str | None = None) -> Path:
    """Load a finished run's trained weights (`final.safetensors`, or that file named directly) into the model's
    trainable parameters; they must be exactly those parameters (the same method and base model). An exported
    full fine-tune (a model folder with `delta_lowrank.safetensors`) is taken too: its stored delta is added to
    the base weights, so a later stage can start from a shipped model when its run folder is gone."""
    path = Path(source)
    if path.is_dir() and not (path / "final.safetensors").exists() and (path / LOWRANK_DELTA).is_file():
        card = json.loads((path / "padellm.json").read_text()) if (path / "padellm.json").is_file() else {}
        if objective is not None and card.get("objective", objective) != objective:
            raise ValueError(
                f"--init-from {source}: that model was trained for {card['objective']!r}, this run trains {objective!r}"
            )
        if not lowrank_delta_targets(path / LOWRANK_DELTA) <= {
            n for n, p in model.named_parameters() if p.requires_grad
        }:
            raise ValueError(
                f"--init-from {source}: its delta is to weights this run does not train; "
                "a low-rank full fine-tune continues with --method full"
            )
        apply_quantized_lowrank(model, path / LOWRANK_DELTA)
        return path / LOWRANK_DELTA
    if path.is_dir():
        path = path / "final.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"--init-from {source}: no finished run there (expected {path})")
    weights = load_file(path)
    differ = names_that_differ(weights, model)
    if differ:
        raise ValueError(
            f"--init-from {source}: its weights are not this run's trainable parameters "
            f"({len(differ)} names differ, e.g. {differ[0]}); use the same --method and base model"
        )
    parameters = dict(model.named_parameters())
    for name, tensor in weights.items():
        if tensor.shape != parameters[name].shape:
            raise ValueError(
                f"--init-from {source}: {name} has shape {tuple(tensor.shape)}, "
                f"the model {tuple(parameters[name].shape)}"
            )
    model.load_state_dict(weights, strict=False)
    return path


def train(config: TrainConfig, documents, schema: LabelSchema, tokenizer, log=print) -> Path:
    run = Path(config.output)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    random.seed(config.seed)

    oversampling = Oversampling(config.oversample_min_mentions, config.oversample_times)
    copies = augmented_documents(documents, MentionReplacement(config.mention_replacement_copies, config.seed))
    if copies:
        log(
            f"mention replacement: {config.mention_replacement_copies} x the corpus added, its mentions swapped for "
            f"others of their label ({len(documents)} -> {len(documents) + len(copies)} documents)"
        )
    documents = list(documents) + copies
    corpus_size = len(documents)
    documents, repeated = epoch_documents(documents, oversampling)
    if oversampling.active:
        log(
            f"oversampling: {repeated} documents with a label of >= {oversampling.min_mentions} mentions appear "
            f"{oversampling.times}x per epoch ({corpus_size} -> {len(documents)} documents)"
        )
    tokenized: list[TokenizedDocument] = [tokenize_document(tokenizer, d, schema, config.objective) for d in documents]
    shared = sum(d.tokens for d in tokenized)
    unshared = sum(d.unshared_tokens for d in tokenized)
    rows_per_epoch = len(pack(tokenized, config.row_tokens, seed=config.seed))
    steps_per_epoch = math.ceil(rows_per_epoch / (config.rows_per_step * config.grad_accum))
    total_steps = config.max_steps or math.ceil(steps_per_epoch * config.epochs)
    log(
        f"{len(documents)} documents -> {shared:,} tokens with prefix sharing ({unshared:,} without: "
        f"{unshared / shared:.2f}x); {rows_per_epoch} rows of {config.row_tokens}; {steps_per_epoch} steps/epoch; "
        f"{total_steps} steps"
    )

    model, causal_lm = load_model(config.base_model, config)
    parameters = [p for p in model.parameters() if p.requires_grad]
    log(f"{config.method}: {sum(p.numel() for p in parameters):,} trainable parameters")
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay)
    checkpoints = Checkpoints(run)
    step, epoch, position, elapsed_before = 0, 0, 0, 0.0
    if checkpoints.exists():
        state = checkpoints.load(model, optimizer)
        step, epoch, position, elapsed_before = state["step"], state["epoch"], state["position"], state["elapsed_s"]
        log(f"resumed from step {step} (epoch {epoch}, row {position}, {elapsed_before / 60:.1f} min trained)")
    elif config.init_from:
        log(f"starting from the weights of {init_weights(model, config.init_from, config.objective)}")
    (run / "train_config.json").write_text(json.dumps(asdict(config), indent=2))

    model.train()
    started = time.monotonic()
    last_checkpoint = started
    log_file = open(run / "log.jsonl", "a")
    rows = pack(tokenized, config.row_tokens, seed=config.seed + epoch)
    bar = tqdm(total=total_steps, initial=step, desc=f"train {config.objective}/{config.method}", unit="step")
    window_tokens, window_start = 0, time.monotonic()
    while step < total_steps:
        if position >= len(rows):
            epoch, position = epoch + 1, 0
            rows = pack(tokenized, config.row_tokens, seed=config.seed + epoch)
        lr = lr_at(step, total_steps, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum, targets_sum, tokens = 0.0, 0, 0
        for _ in range(config.grad_accum):
            chunk = rows[position : position + config.rows_per_step]
            position += config.rows_per_step
            if not chunk:
                break
            batch = collate(chunk, tokenizer.pad_token_id or 0)
            loss, n_targets = batch_loss(causal_lm, batch, config.bf16)
            (loss / config.grad_accum).backward()
            loss_sum += loss.item() * n_targets
            targets_sum += n_targets
            tokens += int(batch["input_ids"].numel())
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_tokens += tokens
        now = time.monotonic()
        tokens_per_s = window_tokens / max(1e-9, now - window_start)
        if now - window_start > 60:
            window_tokens, window_start = 0, now
        elapsed = elapsed_before + now - started
        record = {
            "step": step,
            "epoch": epoch + position / max(1, len(rows)),
            "loss": loss_sum / max(1, targets_sum),
            "lr": lr,
            "tokens_per_s": tokens_per_s,
            "elapsed_s": elapsed,
        }
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{tokens_per_s:.0f}", ep=f"{record['epoch']:.2f}")
        bar.update(1)
        out_of_time = config.time_budget_minutes is not None and (now - started) / 60 >= config.time_budget_minutes
        if step == total_steps or out_of_time or (now - last_checkpoint) / 60 >= config.checkpoint_minutes:
            checkpoints.save(model, optimizer, step, epoch, position, elapsed)
            last_checkpoint = now
        if out_of_time:
            log(f"time budget reached at step {step}; resume to continue")
            break
    bar.close()
    log_file.close()
    if step >= total_steps:
        save_file(trainable_state(model), run / "final.safetensors")
        (run / "final.json").write_text(
            json.dumps(
                {
                    "steps": step,
                    "trained_s": elapsed_before + time.monotonic() - started,
                    "method": config.method,
                    "objective": config.objective,
                }
            )
        )
        log(f"finished: {run / 'final.safetensors'}")
    return run
