"""RESULTS/REPORT.md: the answer first (which T, the decided findings), then every finding, which T per setting,
the replicates side by side, integrity, provenance and figures.

    python -m analysis.report RESULTS

Writes RESULTS/{REPORT.md, findings.json, which_t.json, results.csv, figures/}, and replicates.json when the
runs hold more than one replicate (manifest/expected.json says which seeds each replicate ran). Results it
refuses to merge (two runs of one configuration and seed) end it with one error line, nothing written.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from analysis import figures, findings, stats, table
from runs import atomic_write

MARKS = {stats.PRESENT: "✅", stats.OPPOSITE: "❌", stats.ABSENT: "🟰", stats.UNDECIDED: "❔", stats.NO_NOISE: "❔",
         stats.UNTESTED: "⚪", "described": "📝"}  # fmt: skip


def number(x):
    return "–" if x is None else f"{x:+.2f}"


def effect(f):
    """'+0.43 (-0.26 to +1.05)', the summary of a described finding, or why it was not tested."""
    if f["estimate"] is None:
        return f["summary"] or "no runs"
    if f["low"] is None:
        return f"{number(f['estimate'])} (no interval)"
    return f"{number(f['estimate'])} ({number(f['low'])} to {number(f['high'])})"


def label_text(f):
    return f"{f['label']}, {f['size']}" if f.get("size") else f["label"]


def summary_table(found):
    """Markdown lines: one row per finding (the table README.md and docs/LAB.md show, checked by the tests)."""
    lines = [
        "| # | the paper says | setting | label | effect (simultaneous interval), points |",
        "|---|---|---|---|---|",
    ]
    for f in found:
        claim = f"{f['claim']} ({f['source']})"
        lines.append(f"| {f['id']} | {claim} | {f['setting'] or '–'} | {label_text(f)} | {effect(f)} |")
    return lines


def replicate_table(by_replicate):
    """Markdown lines: each finding's label and estimate in every replicate, and the share of labels that agree
    among the findings with an interval in all of them."""
    reps = sorted(by_replicate)
    head = "| # | " + " | ".join(f"replicate {r}" for r in reps) + " | agree |"
    lines = [head, "|---|" + "---|" * (len(reps) + 1)]
    agree = tested = 0
    for i, f in enumerate(by_replicate[reps[0]]):
        cells = [by_replicate[r][i] for r in reps]
        both = all(c["level"] is not None and c["low"] is not None for c in cells)
        same = both and len({c["label"] for c in cells}) == 1
        agree, tested = agree + same, tested + both
        text = [f"{c['label']} {number(c['estimate'])}" if c["estimate"] is not None else c["label"] for c in cells]
        lines.append(f"| {f['id']} | " + " | ".join(text) + f" | {'yes' if same else 'no' if both else '–'} |")
    lines.append(f"\nLabels agree for {agree} of {tested} findings with an interval in every replicate.")
    return lines


def decided_lines(found, most=10):
    """One line per decided finding (present, opposite, absent), then the ids of the others."""
    decided = [f for f in found if f["label"] in (stats.PRESENT, stats.OPPOSITE, stats.ABSENT)]
    lines = [f"- {f['id']}. {label_text(f)}: {f['claim']} {effect(f)}" for f in decided[:most]]
    rest = [str(f["id"]) for f in found if f not in decided[:most]]
    return lines + [f"- not decided here: {', '.join(rest) or 'none'}"]


def opening(found, which, family):
    """At most 15 lines: which T per setting (the first few), one line per decided finding."""
    lines = ["**Which T** (highest mean top-1; in brackets the T not distinguishable from it, raw 95%):"]
    for w in which[:4]:
        lines.append(f"- {w['setting']}: T = {w['best_T']:g} [{', '.join(f'{t:g}' for t in w['within_noise'])}]")
    if len(which) > 4:
        lines.append(f"- and {len(which) - 4} more settings: see Which T below")
    lines.append(f"\n**Findings** ({family} with intervals; every label holds at once with probability >= 95%):")
    return lines + decided_lines(found, most=13 - len(lines))  # 15 lines with the blank one


def finding_detail(f):
    lines = [f"### {f['id']}. {f['claim']} ({f['source']})", "", f"{MARKS.get(f['label'], '')} **{label_text(f)}**"]
    lines.append(f"- statistic: {f['statistic']}")
    if f["setting"]:
        lines.append(f"- setting: {f['setting']}")
    lines.append(f"- estimate: {effect(f)}")
    if f["level"]:
        lines.append(
            f"- simultaneous level {f['level']:.4f}; raw 95% {number(f['raw_low'])} to {number(f['raw_high'])}; "
            f"{f['units']} seeds; per-seed sd {', '.join(f'{v:.2f}' for v in (f['sd'] or {}).values())}"
        )
    if f["units_needed"] or f["label"] in (stats.UNDECIDED, stats.NO_NOISE):
        n = f["units_needed"]
        lines.append(f"- seeds needed for a decision at this noise and estimate: {n or 'more than 1000'}")
    if f["scope"]:
        lines.append(f"- rests on: {f['scope']}")
    for s in f["secondary"]:
        lines.append(
            f"- also: {s['setting']}: {s['label']} {number(s['estimate'])} "
            f"(raw 95% {number(s['low'])} to {number(s['high'])})"
        )
    lines += [f"- note: {n}" for n in f["notes"]] + [""]
    return lines


def which_t(rows):
    """One dict per KD line: mean top-1 by T, the best T and the T whose per-seed difference to it is within
    the raw 95% interval of 0 (which_t.json's objects)."""
    out = []
    for key, r in findings.settings(findings.kd(rows)):
        try:
            ln = {T: c for T, c in findings.line(r).items() if T is not None}
        except findings.NotTested:
            continue
        means = {T: sum(c.values()) / len(c) for T, c in ln.items()}
        best = max(means, key=means.get)
        within = []
        for T in ln:
            d = [a - ln[T][s] for s, a in ln[best].items() if s in ln[T]]
            ends = stats.t_interval(d, 0.05) if len(d) > 1 else None
            if best == T or (ends and ends[0] <= 0):
                within.append(T)
        out.append(dict(key, setting=findings.name(key), means=means, best_T=best, within_noise=within,
                        seeds=min(len(c) for c in ln.values())))  # fmt: skip
    return out


def replicates_of(root, rows):
    """{replicate: seeds} from manifest/expected.json (one replicate when it says nothing)."""
    path = Path(root) / "manifest" / "expected.json"
    expected = json.loads(path.read_text()) if path.is_file() else []
    reps = {}
    for e in expected:
        reps.setdefault(e.get("replicate", 0), set()).add(e["seed"])
    present = {r: s for r, s in reps.items() if s & {row["seed"] for row in rows}}
    return expected, present


def provenance(rows, trained, problems):
    """Markdown lines: what the results are made of (code, devices, libraries, skipped files)."""
    count = lambda values: ", ".join(f"{v} ({n})" for v, n in Counter(map(str, values)).most_common())  # noqa: E731
    lines = ["## Provenance", "", f"- distillation runs: {len(rows)}; trained checkpoints: {len(trained)}"]
    lines.append(f"- code versions: {count(r['code_version'] for r in rows)}")
    lines.append(f"- devices: {count(r['device'] for r in rows)}")
    for lib in sorted({k for r in rows for k in r["versions"] or {}}):
        lines.append(f"- {lib}: {count((r['versions'] or {}).get(lib) for r in rows)}")
    return lines + [f"- skipped: {p} ({why})" for p, why in problems] + [""]


def write_report(root):
    root = Path(root)
    done, rows, trained, problems = table.load_table(root)
    expected, reps = replicates_of(root, done)
    found = findings.decide_all(done, expected)
    family = sum(f["level"] is not None for f in found)
    which = which_t(done)
    by_rep = {r: findings.decide_all([x for x in done if x["seed"] in seeds]) for r, seeds in reps.items()}
    made = figures.make_all(done, root / "figures")
    failed = [r for r in rows if r["status"] != "ok"]
    missing = table.missing_runs(expected, done) if expected else []
    lines = [f"# Report: {root.name}", ""] + opening(found, which, family) + ["", "## Findings", ""]
    lines += summary_table(found) + ["", stats.__doc__.split("\n\n")[2].replace("\n", " "), ""]
    for f in found:
        lines += finding_detail(f)
    lines += [
        "## Which T",
        "",
        "| setting | " + " | ".join(f"T={T:g}" for T in sorted({T for w in which for T in w["means"]})) + " | best |",
    ]
    temps = sorted({T for w in which for T in w["means"]})
    lines.append("|---|" + "---|" * (len(temps) + 1))
    for w in which:
        cells = [f"{w['means'][T]:.2f}" if T in w["means"] else "–" for T in temps]
        lines.append(f"| {w['setting']} | " + " | ".join(cells) + f" | {w['best_T']:g} |")
    if len(by_rep) > 1:
        lines += ["", "## Replicates", "", "Each replicate's seeds analysed alone (own teachers and students):", ""]
        lines += replicate_table(by_rep)
    lines += ["", "## Integrity", "", f"- expected runs not finished: {len(missing)}", f"- failed runs: {len(failed)}"]
    lines += [f"  - {table.describe_run(e)}" for e in missing[:20]] + [
        f"  - failed: {r['run_dir']}" for r in failed[:20]
    ]
    lines += [""] + provenance(done, trained, problems)
    lines += ["## Figures", ""] + [f"- [{Path(p).name}](figures/{Path(p).name})" for p in made]
    table.write_results_csv(done, root / "results.csv")
    dump = lambda x: json.dumps(x, indent=1, default=str) + "\n"  # noqa: E731
    atomic_write(root / "findings.json", dump(found))
    atomic_write(root / "which_t.json", dump(which))
    if len(by_rep) > 1:
        atomic_write(root / "replicates.json", dump({str(r): f for r, f in by_rep.items()}))
    atomic_write(root / "REPORT.md", "\n".join(lines) + "\n")
    return found


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Write RESULTS/REPORT.md, findings.json, which_t.json, results.csv, figures."
    )
    p.add_argument("results", help="folder holding run folders (at any depth)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"report.py: error: RESULTS '{args.results}' is not a folder", file=sys.stderr)
        return 2
    try:
        found = write_report(args.results)
    except table.AnalysisError as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 2
    for f in found:
        print(f"{f['id']:>2} {label_text(f):>24}: {f['claim']}")
    print(f"report.py: -> {Path(args.results) / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
