"""The README and docs/LAB.md tell the lab's results as the committed findings.json files say them: each table is
report.summary_table of one file, verbatim, and the files are what report.py writes (every key, every id)."""

import json
from pathlib import Path

import pytest

from analysis import report

ROOT = Path(__file__).resolve().parent.parent
DOCS = {  # page -> the findings.json copies whose summary tables it shows
    "README.md": ["docs/lab-findings.json"],
    "docs/LAB.md": ["docs/lab-findings.json", "docs/lab-long-findings.json", "docs/lab-full-findings.json"],
}
KEYS = {"id", "claim", "setting", "estimate", "low", "high", "low_adj", "high_adj", "margin", "label", "seeds", "runs"}


@pytest.mark.parametrize("page", DOCS)
def test_each_results_table_is_the_summary_of_a_committed_findings_file(page):
    text = (ROOT / page).read_text()
    for path in DOCS[page]:
        findings = json.loads((ROOT / path).read_text())
        assert "\n".join(report.summary_table(findings)) in text, f"{page}: its table of {path} is out of date"


def test_the_committed_findings_files_are_whole_reports():
    for path in sorted({p for paths in DOCS.values() for p in paths}):
        findings = json.loads((ROOT / path).read_text())
        assert [f["id"] for f in findings] == list(range(1, 18)), path
        assert all(set(f) >= KEYS for f in findings), path
        tested = [f for f in findings if f["low_adj"] is not None]
        assert tested and all(f["low_adj"] <= f["low"] and f["high"] <= f["high_adj"] for f in tested), path
