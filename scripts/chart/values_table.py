"""Writes the Values section of charts/padellm-ner/README.md from values.yaml's `## @section` and `## @param`
comments (Bitnami's convention), so that the README documents every value with its default. Run after changing
values.yaml: `.venv/bin/python scripts/chart/values_table.py`; tests/test_chart.py checks the README is current."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "padellm-ner"
START = "## Values\n"
INTRO = "Every value, as documented in `values.yaml` (and typed in `values.schema.json`):\n"


def lookup(values: dict, path: str):
    for key in path.split("."):
        values = values[key]
    return values


def default(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    out: list[str] = []
    params: list[list[str]] = []  # [name, description], a description going on over `## ` lines
    for line in values_text.splitlines():
        section = re.match(r"\s*## @section (.+)", line)
        param = re.match(r"\s*## @param (\S+) (.+)", line)
        more = re.match(r"\s*## (?!@)(.+)", line)
        if section:
            out += flush(params, values)
            out += ["", f"### {section.group(1)}", "", "| value | description | default |", "|---|---|---|"]
        elif param:
            out += flush(params, values)
            params.append(list(param.groups()))
        elif more and params:
            params[-1][1] += " " + more.group(1)
        else:
            out += flush(params, values)
    return "\n".join(out + flush(params, values)) + "\n"


def flush(params: list[list[str]], values: dict) -> list[str]:
    rows = [f"| `{name}` | {description} | `{default(lookup(values, name))}` |" for name, description in params]
    params.clear()
    return rows


def render(readme: str, values_text: str) -> str:
    head = readme[: readme.index(START)]
    return head + START + "\n" + INTRO + "\n" + table(values_text)


def main() -> int:
    readme = CHART / "README.md"
    new = render(readme.read_text(), (CHART / "values.yaml").read_text())
    if "--check" in sys.argv:
        return 0 if new == readme.read_text() else 1
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
