"""From a preset's expected runs to its findings, before an hour of compute: a fabricated result for every run a
preset expects (a planted trend of +2 points on every line, labels-only students 10 points below), analysed. Every
finding the preset says it tests is tested, and the planted effects get their labels."""

import pytest

import grid
from analysis import findings, stats
from fabricate import expected_runs, rows_for

SEED_NOISE = [0.1, -0.15, 0.05, 0.0, 0.1, -0.1]


def planted(run):
    """70 at T <= 5, 72 above; 60 on labels alone; a little noise per seed and T (so the sd is not 0)."""
    noise = SEED_NOISE[(run["seed"] + int(run["T"] or 0)) % len(SEED_NOISE)]
    if run["method"] == "labels":
        return 60.0 + noise
    return 70.0 + 2.0 * (run["T"] is not None and run["T"] > findings.USUAL_T) + noise


CASES = {
    "lab": (dict(preset="lab"), grid.LAB["findings"]),
    "lab-long": (dict(preset="lab-long"), grid.LAB_LONG["findings"]),
    "lab-full": (dict(preset="lab-full"), grid.LAB_FULL["findings"]),
    "demo": (dict(preset="demo"), grid.DEMO["findings"]),
    "study": (dict(preset="study", options=grid.study_options(data_root="birds", teacher="t.pt")),
              grid.STUDY["findings"]),
    "study --source": (dict(preset="study", options=grid.study_options(data_root="birds", source="src")),
                       grid.STUDY["findings"] + grid.STUDY["source_findings"]),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_every_finding_a_preset_claims_is_tested_and_the_planted_trend_is_found(case):
    kwargs, claimed = CASES[case]
    rows = rows_for(expected_runs(**kwargs), planted)
    found = {f["id"]: f for f in findings.decide_all(rows)}
    untested = {i: found[i]["summary"] for i in claimed if found[i]["label"] == stats.UNTESTED}
    assert not untested
    assert found[1]["estimate"] == pytest.approx(10.0 + 2.0 * 2 / 5, abs=0.2) or "demo" in case
    assert found[3]["estimate"] == pytest.approx(2.0, abs=0.2) and found[3]["label"] == stats.PRESENT
    unclaimed = [i for i, f in found.items() if i not in claimed and f["label"] != stats.UNTESTED]
    assert not unclaimed, f"tested but not claimed by {case}: {unclaimed}"
