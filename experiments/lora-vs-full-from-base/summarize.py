"""Table, JSON and plot of the LoRA-against-full comparison (see decision.txt): for each export folder NAME
(F15, L15, ...) under FOLDER, its training log up to the cut, its size and its dev-sample score.

usage: summarize.py FOLDER   (writes FOLDER/report.json and FOLDER/loss.png, prints the table)
"""

import json
import statistics
import sys
from pathlib import Path

ARMS = {"F": "full fine-tune, int4 low-rank export (rank-152 bytes, energy)", "L": "LoRA r40 alpha 32, bf16 adapter"}


def summarize(export: Path) -> dict:
    log = [json.loads(line) for line in (export / "train-log.jsonl").read_text().splitlines() if line.strip()]
    score = json.loads((export / "dev300.json").read_text())
    size = sum(p.stat().st_size for p in export.glob("*.safetensors"))
    return {
        "export": export.name,
        "arm": ARMS[export.name[0]],
        "steps": log[-1]["step"],
        "train_minutes": log[-1]["elapsed_s"] / 60,
        "packed_tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in log[1:]),
        "loss_last_10_steps": statistics.mean(r["loss"] for r in log[-10:]),
        "weights_bytes": size,
        "dev300_micro_f1": score["micro_f1"],
        "dev300_precision": score["precision"],
        "dev300_recall": score["recall"],
        "tokens_per_sequence_mean": score["tokens_per_sequence_mean"],
        "log": [(r["elapsed_s"] / 60, r["loss"]) for r in log],
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, color in (("F", "tab:blue"), ("L", "tab:orange")):
        runs = [r for r in rows if r["export"].startswith(arm)]
        if not runs:
            continue
        points = max(runs, key=lambda r: r["steps"])["log"]
        smooth = [statistics.mean(loss for _, loss in points[max(0, i - 9) : i + 1]) for i in range(len(points))]
        scores = ", ".join(f"{100 * r['dev300_micro_f1']:.1f} at {r['train_minutes']:.0f} min" for r in runs)
        ax.plot([m for m, _ in points], smooth, color=color, label=f"{ARMS[arm]}; dev-300 F1 {scores}")
        for r in runs:
            ax.axvline(r["train_minutes"], color=color, linestyle=":", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("training minutes (2 cores, fp32)")
    ax.set_ylabel("training loss (10-step mean)")
    ax.set_title("full fine-tune vs LoRA from the base model; F1 on the dev sample of 300 at each cut", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(folder: str) -> None:
    root = Path(folder)
    rows = [summarize(p) for p in sorted(root.iterdir()) if (p / "dev300.json").exists()]
    (root / "report.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "log"} for r in rows], indent=2))
    plot(rows, root / "loss.png")
    print("| export | arm | steps | minutes | packed tok/s | loss (last 10) | bytes | dev-300 F1 | P | R |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['export']} | {r['arm']} | {r['steps']} | {r['train_minutes']:.1f} | "
            f"{r['packed_tokens_per_s_median']:.0f} | {r['loss_last_10_steps']:.3f} | {r['weights_bytes']:,} | "
            f"{100 * r['dev300_micro_f1']:.2f} | {100 * r['dev300_precision']:.2f} | {100 * r['dev300_recall']:.2f} |"
        )
    print(f"wrote {root / 'report.json'} and {root / 'loss.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
