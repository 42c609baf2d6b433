"""recognize / eval / bench / train / export through the CLI, on a tiny model (fast) and the real base model."""

import json
import shutil

import pytest
from conftest import EXAMPLES

from entrypoints.cli import main


@pytest.fixture(scope="module")
def tiny_models(tiny_base_model, tmp_path_factory):
    """A tiny PaDeLLM model and a tiny AutoReg_Struct model, each trained for 2 steps and exported."""
    root = tmp_path_factory.mktemp("tiny-models")
    models = {}
    for objective in ("padellm", "autoreg-struct"):
        run = root / f"run-{objective}"
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(EXAMPLES / "sample.conll"),
                    "--schema",
                    "conll03",
                    "--output",
                    str(run),
                    "--objective",
                    objective,
                    "--max-steps",
                    "2",
                    "--rows-per-step",
                    "2",
                    "--no-bf16",
                    "--oversample-min-mentions",
                    "2",
                    "--oversample-times",
                    "2",
                    "--base-model",
                    str(tiny_base_model),
                ]
            )
            == 0
        )
        assert json.loads((run / "train_config.json").read_text())["oversample_min_mentions"] == 2
        assert main(["export", "--run", str(run), "--output", str(root / objective), "--rank", "4"]) == 0
        models[objective] = root / objective
    return models


@pytest.mark.parametrize("objective", ["padellm", "autoreg-struct"])
def test_eval_json_fields(tiny_base_model, tiny_models, capsys, tmp_path, objective):
    predictions = tmp_path / "pred.jsonl"
    assert (
        main(
            [
                "eval",
                "--data",
                str(EXAMPLES / "sample.conll"),
                "--model",
                str(tiny_models[objective]),
                "--base-model",
                str(tiny_base_model),
                "--json",
                "--predictions",
                str(predictions),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    for key in ("micro_f1", "latency_ms_mean", "latency_ms_p50", "latency_ms_p95", "tokens_per_sequence_mean"):
        assert key in report
    assert report["documents"] == 5 and report["mode"] == objective
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 5 and {"id", "text", "entities"} <= set(rows[0])
    # PaDeLLM's mentions carry their probability; AutoReg_Struct's one sequence gives none per mention
    assert all(("probability" in e) == (objective == "padellm") for row in rows for e in row["entities"])
    # the predictions file scores to the same set-based F1 through `score`
    assert main(["score", "--pred", str(predictions), "--gold", str(EXAMPLES / "sample.conll"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_f1"] == pytest.approx(report["micro_f1"])


def test_bench_reports_modes_side_by_side(tiny_base_model, tiny_models, capsys, tmp_path):
    assert (
        main(
            [
                "bench",
                "--data",
                str(EXAMPLES / "sample.conll"),
                "--model",
                str(tiny_models["padellm"]),
                "--baseline-model",
                str(tiny_models["autoreg-struct"]),
                "--base-model",
                str(tiny_base_model),
                "--output-dir",
                str(tmp_path),
                "--sample",
                "2",
                "--seed",
                "3",
                "--precisions",
                "float32,int8",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["documents"] == 2 and report["documents_selected"]["how"] == "sample"
    # the mode names depend on the flags, not on the machine: each asked precision is `padellm@P`, and the one
    # `auto` resolved to here is the `padellm` run itself (fp32 on an AVX2 CPU, bf16 on a native-bf16 one)
    assert set(report["modes"]) == {
        "padellm",
        "padellm-no-prefix-sharing",
        "autoreg-struct",
        "floor",
        "padellm@float32",
        "padellm@int8",
    }
    torch = pytest.importorskip("torch")
    from workers.engine.precision import pick_precision

    auto = pick_precision("auto", torch.device("cpu")).value
    assert report["dtype"] == auto and report["modes"]["padellm"]["precision"] == auto
    decoded = {f"padellm@{p}" for p in ("float32", "int8") if p != auto}
    for name in ("padellm@float32", "padellm@int8"):
        assert report["modes"][name]["precision"] == name.split("@")[1]
        assert ("same_run_as" in report["modes"][name]) == (name not in decoded)
    for mode in report["modes"].values():
        assert {"latency_ms_mean", "micro_f1", "tokens_per_sequence_mean"} <= set(mode)
    assert {"padellm_vs_autoreg-struct", "padellm_vs_padellm-no-prefix-sharing"} <= set(report["speedup"])
    # every mode against the floor of the same documents, which no mode goes below
    assert report["speedup"]["padellm_vs_floor"] > 1.0 and report["speedup"]["autoreg-struct_vs_floor"] > 1.0
    assert set(report["documents_differing_from_padellm"]) == decoded
    assert report["lookup_tokens"] == 4 and all("accepted_tokens_mean" in m for m in report["modes"].values())
    assert (tmp_path / "bench.png").stat().st_size > 0 and (tmp_path / "bench.json").exists()


def test_recognize_with_the_real_base_model(capsys):
    assert main(["recognize", "EU rejects German call .", "--no-adapter", "--labels", "PER,LOC", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["counts"]) == {"PER", "LOC"}
    assert {"entities", "model", "schema", "latency_ms"} <= set(record)


def test_recognize_gives_autoreg_struct_mentions_no_probability(capsys):
    """AutoReg_Struct writes all mentions in one sequence: no probability per mention, so null, not a made-up 1.0."""
    from padellm_ner.config import REPO_ROOT

    model = REPO_ROOT / "models" / "autoreg-struct-conll03"
    if not (model / "padellm.json").exists():
        pytest.skip(f"no AutoReg_Struct model at {model}")
    assert main(["recognize", "EU rejects German call to boycott British lamb .", "--model", str(model), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {e["text"] for e in record["entities"]} >= {"EU", "German", "British"}
    assert all(e["probability"] is None for e in record["entities"])
    assert main(["recognize", "EU rejects German call to boycott British lamb .", "--model", str(model)]) == 0
    assert "EU" in capsys.readouterr().out


@pytest.mark.precision("float32")  # probabilities compared to fp32 rounding
def test_recognize_with_and_without_prompt_lookup(capsys):
    """The shipped model's entities do not depend on drafting; a negative draft length is refused."""
    text = "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria ."
    records = []
    for lookup in ("0", "4"):
        assert main(["recognize", text, "--lookup-tokens", lookup, "--json"]) == 0
        records.append(json.loads(capsys.readouterr().out))
    spans = [[(e["label"], e["text"], e["start"], e["end"]) for e in r["entities"]] for r in records]
    assert spans[0] and spans[0] == spans[1]
    # the same tokens; their probabilities agree to float32 rounding (a drafted forward has another shape)
    for plain, drafted in zip(records[0]["entities"], records[1]["entities"]):
        assert drafted["probability"] == pytest.approx(plain["probability"], abs=1e-4)
    with pytest.raises(SystemExit) as refused:
        main(["recognize", text, "--lookup-tokens", "-1"])
    assert refused.value.code == 2 and "-1 is below 0" in capsys.readouterr().err


def test_train_refuses_a_repeat_count_below_one(capsys, tmp_path):
    with pytest.raises(SystemExit) as refused:
        main(
            [
                "train",
                "--data",
                str(EXAMPLES / "sample.conll"),
                "--output",
                str(tmp_path / "run"),
                "--oversample-min-mentions",
                "3",
                "--oversample-times",
                "0",
            ]
        )
    assert refused.value.code == 2 and "0 is below 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_recognize_rejects_unknown_labels(capsys):
    assert main(["recognize", "EU rejects", "--no-adapter", "--labels", "GPE"]) == 2
    assert "not in schema conll03" in capsys.readouterr().err


def test_eval_refuses_limit_and_sample_together(capsys):
    assert main(["eval", "--data", str(EXAMPLES / "sample.conll"), "--limit", "2", "--sample", "2"]) == 2
    assert "either a limit" in capsys.readouterr().err


def test_bench_serving_reports_overhead_and_throughput(tiny_base_model, tiny_models, capsys):
    assert (
        main(
            [
                "bench-serving",
                "--data",
                str(EXAMPLES / "sample.conll"),
                "--limit",
                "4",
                "--worker-counts",
                "1",
                "--concurrency",
                "1,2",
                "--model",
                str(tiny_models["padellm"]),
                "--base-model",
                str(tiny_base_model),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    overhead = report["overhead"]
    assert report["documents"] == 4 and overhead["mode"] == "multi"
    assert overhead["in_process"]["mean_ms"] > 0 and overhead["grpc_orchestrated"]["mean_ms"] > 0
    # at least the Count batch of each document (how the micro-batcher gathers calls is tested in test_batching
    # and test_serving; here, on a loaded machine, a step's calls may straddle its window)
    assert overhead["worker_admissions_per_document_mean"] >= 1
    one, two = report["throughput"]
    assert (one["concurrency"], two["concurrency"]) == (1, 2) and one["vs_fewest_in_flight"] == 1.0
    assert all(t["workers"] == 1 and t["documents"] == 4 and t["documents_per_s"] > 0 for t in (one, two))


@pytest.mark.parametrize(
    "flags, native, expected",
    [(["--bf16"], False, True), (["--no-bf16"], True, False), ([], True, True), ([], False, False)],
)
def test_train_autocasts_bf16_only_where_the_cpu_has_it(
    tiny_base_model, tmp_path, monkeypatch, capsys, flags, native, expected
):
    """Default: bf16 autocast where the CPU computes bf16 natively (emulated elsewhere, many times slower than
    fp32); --bf16 / --no-bf16 override the probe."""
    import workers.engine.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(EXAMPLES / "sample.conll"),
                "--schema",
                "conll03",
                "--output",
                str(run),
                "--max-steps",
                "1",
                "--rows-per-step",
                "1",
                "--base-model",
                str(tiny_base_model),
                *flags,
            ]
        )
        == 0
    )
    assert json.loads((run / "train_config.json").read_text())["bf16"] is expected
    chosen = "bf16 autocast" if expected else "fp32"
    assert (f"train: {chosen} (this CPU" in capsys.readouterr().err) == (not flags)
    with pytest.raises(SystemExit):
        main(["train", "--data", "x", "--output", str(run), "--bf16", "--no-bf16"])


def test_export_choices_are_the_exporters():
    """The CLI spells the export forms and rank allocations (parsing imports no torch); they must be the ones the
    exporter takes."""
    from entrypoints.cli import build_parser
    from workers.training.export import QUANTIZED_FORMS, RANK_ALLOCATIONS

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    export = {a.dest: a for a in commands.choices["export"]._actions}
    assert set(export["form"].choices) == {"lora", *QUANTIZED_FORMS}
    assert set(export["rank_allocation"].choices) == set(RANK_ALLOCATIONS)


@pytest.mark.parametrize("objective", ["padellm", "autoreg-struct"])
def test_calibrate_writes_the_activation_peaks_int8_then_folds_in(
    tiny_base_model, tiny_models, capsys, tmp_path, objective
):
    from workers.engine.loading import load_engine_model
    from workers.engine.smoothing import ACTIVATION_PEAKS, SMOOTHED, load_peaks

    folder = tmp_path / objective
    shutil.copytree(tiny_models[objective], folder)
    args = ["calibrate", "--model", str(folder), "--data", str(EXAMPLES / "sample.conll"), "--sample", "2"]
    assert main([*args, "--base-model", str(tiny_base_model)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["output"] == str(folder / ACTIVATION_PEAKS) and summary["documents"] == 2
    peaks = load_peaks(folder / ACTIVATION_PEAKS)
    assert len(peaks) == 2 * len(SMOOTHED) and all(bool((p >= 0).all()) and p.max() > 0 for p in peaks.values())
    model = load_engine_model(folder, base_model=tiny_base_model, dtype="int8")
    assert model.info["smoothing"] == "smoothquant"


def test_calibrate_refuses_a_folder_that_is_no_model(capsys, tmp_path):
    args = ["calibrate", "--model", str(tmp_path), "--data", str(EXAMPLES / "sample.conll")]
    with pytest.raises(SystemExit, match="not a model folder"):
        main(args)
