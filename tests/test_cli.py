import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO

from entrypoints.cli import main

CLI = [str(Path(sys.executable).parent / "padellm-ner")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO)


def test_console_entry_point_stats_json():
    result = run("data", "stats", str(EXAMPLES / "sample.conll"), "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["documents"], stats["sentences"], stats["mentions"]) == (2, 5, 14)
    assert stats["per_label"] == {"LOC": 6, "MISC": 2, "ORG": 4, "PER": 2}


def test_stats_table(capsys):
    assert main(["data", "stats", str(EXAMPLES / "sample.conll")]) == 0
    out = capsys.readouterr().out
    assert "sentences   5" in out and "LOC" in out


def test_reformulate(capsys, tmp_path):
    output = tmp_path / "examples.jsonl"
    assert main(["data", "reformulate", str(EXAMPLES / "sample.conll"), "--schema", "conll03", "-o", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    # a label with n mentions gives n examples, an absent one gives 1: 4 + 6 + 5 + 4 + 5 over the 5 sentences
    assert len(rows) == 24
    first = rows[0]
    assert first["label"] == "ORG" and first["count"] == 1 and first["target"] == "1\n<mention 1>Siemens"
    assert first["prompt"].startswith("text:\nLena Okafor joined Siemens") and first["prompt"].endswith("ORG\n\n<num>")
    assert {r["target"] for r in rows if r["count"] == 0} == {"0"}


def test_score_json_keys_and_policies(capsys):
    reports = {}
    for policy in ("none", "keep-max", "reverse"):
        assert main(["score", "--pred", str(EXAMPLES / "sample_results.json"), "--dedup", policy, "--json"]) == 0
        reports[policy] = json.loads(capsys.readouterr().out)
    for report in reports.values():
        assert {"micro_f1", "macro_f1", "precision", "recall", "per_label"} <= set(report)
    assert reports["none"]["micro_f1"] == pytest.approx(26 / 31)
    assert reports["keep-max"]["micro_f1"] == pytest.approx(24 / 28)


def test_score_documents_against_gold(capsys, tmp_path):
    # the gold file scored against itself is perfect under both metrics
    for metric in ("set", "span"):
        gold = str(EXAMPLES / "sample.conll")
        assert main(["score", "--pred", gold, "--gold", gold, "--metric", metric, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["micro_f1"] == 1.0 and report["fp"] == 0 and report["fn"] == 0


def test_score_bootstrap_and_paired_comparison(capsys, tmp_path):
    results = str(EXAMPLES / "sample_results.json")
    assert main(["score", "--pred", results, "--bootstrap", "300", "--seed", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    interval = report["micro_f1_interval"]
    assert interval["estimate"] == pytest.approx(report["micro_f1"]) and interval["resamples"] == 300
    assert interval["low"] <= report["micro_f1"] <= interval["high"] < 1.0
    # against itself: the same score, a difference of exactly 0 in every resample
    assert main(["score", "--pred", results, "--against", results, "--bootstrap", "100", "--json"]) == 0
    against = json.loads(capsys.readouterr().out)["against"]
    assert against["micro_f1"] == pytest.approx(report["micro_f1"])
    assert against["paired"]["difference"]["low"] == against["paired"]["difference"]["high"] == 0.0
    assert main(["score", "--pred", results, "--against", results, "--bootstrap", "100"]) == 0
    text = capsys.readouterr().out
    assert "95 % interval" in text and "difference +0.00" in text
    gold = str(EXAMPLES / "sample.conll")
    result = run("score", "--pred", gold, "--gold", gold, "--against", results)
    assert result.returncode == 2 and "--against" in result.stderr and "missing" in result.stderr
    result = run("score", "--pred", results, "--bootstrap", "-3")
    assert result.returncode == 2 and "resamples" in result.stderr


def test_convert_round_trip(tmp_path, capsys):
    out = tmp_path / "sample.jsonl"
    assert main(["data", "convert", str(EXAMPLES / "sample.conll"), "--to", "jsonl", "-o", str(out)]) == 0
    assert (
        main(["score", "--pred", str(out), "--gold", str(EXAMPLES / "sample.conll"), "--metric", "span", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["micro_f1"] == 1.0


def test_errors_are_clear_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "EU", "entities": [{"start": 0, "end": 7, "label": "ORG"}]}\n')
    result = run("data", "stats", str(bad))
    assert result.returncode == 2
    assert "bad:1" in result.stderr and "offsets" in result.stderr
    result = run("data", "stats", str(tmp_path / "missing.conll"))
    assert result.returncode == 2 and "No such file" in result.stderr
    result = run("score", "--pred", str(EXAMPLES / "sample_results.json"), "--metric", "span")
    assert result.returncode == 2 and "gold" in result.stderr


@pytest.mark.datasets
def test_stats_on_conll2003_original_and_official(datasets):
    expected = {"train": (14041, 23499), "valid": (3250, 5942), "test": (3453, 5648)}
    official = {"train": "conll03_train", "valid": "conll03_dev", "test": "conll03_test"}
    for split, (sentences, mentions) in expected.items():
        for path in (
            datasets / f"conll2003/original/{split}.txt",
            datasets / f"conll2003/padellm_json/{official[split]}.json",
        ):
            result = run("data", "stats", str(path), "--json")
            stats = json.loads(result.stdout)
            assert (stats["sentences"], stats["mentions"]) == (sentences, mentions), path
