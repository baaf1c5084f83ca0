"""README.md and docs/LAB.md tell the lab's results as the committed findings files say them: each table is
report.summary_table (or report.replicate_table) of one file, verbatim, and the files are what report.py writes."""

import json
from pathlib import Path

import pytest

from analysis import report

ROOT = Path(__file__).resolve().parent.parent
TABLES = {  # page -> the committed files whose tables it shows
    "docs/LAB.md": ["docs/lab-findings.json", "docs/lab-replicates.json"],
}
KEYS = {"id", "claim", "setting", "estimate", "low", "high", "raw_low", "raw_high", "level", "label", "units",
        "scope", "runs", "units_needed"}  # fmt: skip


def table_of(path):
    found = json.loads((ROOT / path).read_text())
    if isinstance(found, dict):  # replicates.json: {replicate: findings}
        return report.replicate_table({int(r): f for r, f in found.items()})
    return report.summary_table(found)


def test_the_readme_gives_the_labs_decided_findings_as_its_findings_file_says():
    found = json.loads((ROOT / "docs/lab-findings.json").read_text())
    block = (
        "<!-- answer: docs/lab-findings.json -->\n" + "\n".join(report.decided_lines(found)) + "\n<!-- end answer -->"
    )
    assert block in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("page", TABLES)
def test_each_results_table_is_the_table_of_a_committed_file(page):
    text = (ROOT / page).read_text()
    for path in TABLES[page]:
        assert "\n".join(table_of(path)) in text, f"{page}: its table of {path} is out of date"


def test_the_committed_findings_file_is_a_whole_report():
    found = json.loads((ROOT / "docs/lab-findings.json").read_text())
    assert [f["id"] for f in found] == list(range(1, 18))
    assert all(set(f) >= KEYS for f in found)
    tested = [f for f in found if f["low"] is not None]
    assert tested and all(f["low"] <= f["raw_low"] and f["raw_high"] <= f["high"] for f in tested)
    assert all(f["scope"] for f in tested)
