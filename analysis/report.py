"""RESULTS/REPORT.md: provenance, the paper's findings checked on the results, every figure and table.

    python analysis/report.py RESULTS

Runs the whole analysis: RESULTS/results.csv (aggregate.py), RESULTS/figures/ (figures.py) and the
report, whose links are relative to RESULTS.
"""
import argparse
import os
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, also when run as a script
from analysis import aggregate, figures, findings  # noqa: E402
from runs import atomic_write  # noqa: E402

VERDICT_MARKS = {findings.REPRODUCED: "✅", findings.NOT_REPRODUCED: "❌", findings.NOT_ENOUGH: "⚪"}


def counted(values):
    """'a (3 runs), b (1 run)' for the distinct values, most frequent first."""
    counts = Counter(str(v) for v in values if v not in (None, ""))
    return ", ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in counts.most_common()) or "not recorded"


def library_versions(records):
    """{library: 'version (n runs), ...'} over every result's "versions"."""
    seen = {}
    for r in records:
        versions = r.get("versions")
        for lib, version in versions.items() if isinstance(versions, dict) else ():
            seen.setdefault(lib, []).append(version)
    return {lib: counted(v) for lib, v in sorted(seen.items())}


def escape(text):
    """Text safe inside a Markdown table cell ('–' for nothing)."""
    return "–" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


def provenance_section(records, problems):
    """Markdown lines: what the results are made of (code, devices, libraries, runs, failures, problems)."""
    distill = [r for r in records if r.get("kind") == "distill"]
    train = [r for r in records if r.get("kind") == "train"]
    failed = [r for r in records if r.get("status") != "ok"]
    lines = ["## Provenance", "",
             f"- runs: {len(distill)} distillation ({sum(r['status'] == 'ok' for r in distill)} finished, "
             f"{sum(r['status'] != 'ok' for r in distill)} failed), {len(train)} teacher/student training, "
             f"{len(records) - len(distill) - len(train)} other",
             f"- code versions: {counted(r.get('code_version') for r in records)}",
             f"- devices: {counted(r.get('device') for r in records)}"]
    lines += [f"- {lib}: {versions}" for lib, versions in library_versions(records).items()]
    if failed:
        lines += ["", f"### Failed runs ({len(failed)})", "", "| run folder | reason |", "|---|---|"]
        lines += [f"| `{escape(r.get('run_dir'))}` | {escape(r.get('reason') or 'no reason given')} |" for r in failed]
    if train:
        lines += ["", "### Training runs (teachers, TT/FT student initialisations)", "",
                  "| checkpoint | arch | dataset | init | epochs | top-1 | run folder |", "|---|---|---|---|---|---|---|"]
        for r in train:
            cfg, final = r.get("config") or {}, r.get("final") or {}
            init = (r.get("origination") or {}).get("init", cfg.get("init"))
            top1 = final.get("top1")
            lines.append(f"| {escape(r.get('checkpoint', '?'))} | {escape(cfg.get('arch'))} | {escape(cfg.get('dataset'))} | "
                         f"{escape(init)} | {escape(cfg.get('epochs'))} | {'–' if top1 is None else f'{top1:.2f}'} | "
                         f"`{escape(r.get('run_dir'))}` |")
    lines += ["", f"### Files the loader skipped ({len(problems)})", ""]
    lines += [f"- `{path}`: {reason}" for path, reason in problems] or ["- none"]
    return lines + [""]


def findings_section(checked):
    lines = ["## Findings", "",
             "Each of the paper's conclusions (STUDY.md §5) checked on these results. Differences smaller than the "
             "seed spread (the largest std of the compared points, or 1 point with a single seed) count as "
             "\"no clear difference\".", ""]
    for f in checked:
        lines.append(f"- {VERDICT_MARKS[f['verdict']]} **{f['verdict']}** — {f['claim']} ({f['summary']})")
        lines.append(f"  - rule: {f['rule']}")
        lines += [f"  - {e}" for e in f["evidence"]]
    return lines + [""]


def artifacts_section(made, report_dir):
    """Markdown lines: each figure linked (relative to the report), its key numbers; tables inlined."""
    lines = ["## Figures and tables", ""]
    for name, result in made.items():
        lines += [f"### {name}", ""]
        if result["missing"]:
            lines += [f"*Missing:* {result['missing']}", ""]
        for path in result["files"]:
            rel = os.path.relpath(path, report_dir).replace(os.sep, "/")
            if path.endswith(".png"):
                lines += [f"![{name}]({rel})", ""]
            elif path.endswith(".md"):
                text = Path(path).read_text().splitlines()
                body = ["##" + line if line.startswith("## ") else line for line in text[2:]]   # under "###"
                lines += [f"Table file: [{rel}]({rel})", ""] + body
        if result["key_numbers"]:
            lines += ["Key numbers:", ""] + [f"- {k}: {v}" for k, v in result["key_numbers"].items()] + [""]
    return lines


def write_report(results_dir, out=None, figures_dir=None):
    """Aggregate, draw and check everything under results_dir; write results.csv, figures/ and REPORT.md.
    Returns (report path, findings, artifacts, problems)."""
    results_dir = Path(results_dir)
    records, problems = aggregate.load_results(results_dir)
    rows = aggregate.distill_rows(records)
    aggregate.write_csv(aggregate.aggregate(rows), results_dir / "results.csv", aggregate.AGGREGATE_COLUMNS)
    made = figures.make_all(rows, figures_dir or results_dir / "figures")
    checked = findings.check_all(rows)
    out = Path(out or results_dir / "REPORT.md")
    csv_link = os.path.relpath(results_dir / "results.csv", out.parent).replace(os.sep, "/")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# KD temperature study: results report", "",
             f"Generated {stamp} from `{results_dir}` by `analysis/report.py`; per-configuration means in "
             f"[results.csv]({csv_link}). Accuracy is final test top-1 (%), mean ± std over seeds.", ""]
    lines += provenance_section(records, problems) + findings_section(checked) + artifacts_section(made, out.parent)
    path = atomic_write(out, "\n".join(lines) + "\n")
    return path, checked, made, problems


def main(argv=None):
    p = argparse.ArgumentParser(description="Write RESULTS/REPORT.md (plus results.csv and figures/) from run folders.")
    p.add_argument("results", help="folder holding run folders (at any depth)")
    p.add_argument("--out", default=None, help="report path (default: RESULTS/REPORT.md)")
    args = p.parse_args(argv)
    prog = "report.py"
    if not Path(args.results).is_dir():
        print(f"{prog}: error: RESULTS '{args.results}' is not a folder", file=sys.stderr)
        return 2
    path, checked, made, problems = write_report(args.results, args.out)
    aggregate.print_problems(problems, prog)
    for f in checked:
        print(f"{f['verdict']:>18}: {f['claim']}")
    print(f"{prog}: {sum(bool(m['files']) for m in made.values())} of {len(made)} figures/tables made -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
