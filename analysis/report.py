"""RESULTS/REPORT.md: provenance, the paper's findings checked on the results, every figure and table.

    python analysis/report.py RESULTS

Runs the whole analysis: RESULTS/results.csv (aggregate.py), RESULTS/figures/ (figures.py), the report,
whose links are relative to RESULTS and whose first table says which T (which_t.py), findings.json (one
object per finding) and which_t.json (one object per setting of KD runs) beside it. Results it
refuses to merge (two runs of one configuration and seed) end it with one error line, nothing written.
"""

import argparse
import json
import os
import re
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, also when run as a script
from analysis import aggregate, figures, findings, integrity, selection, stats, which_t  # noqa: E402
from runs import atomic_write  # noqa: E402

LABEL_MARKS = {
    stats.PRESENT: "✅",
    stats.OPPOSITE: "❌",
    stats.ABSENT: "🟰",
    stats.UNDECIDED: "❔",
    stats.UNTESTED: "⚪",
}


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
    lines = [
        "## Provenance",
        "",
        f"- runs: {len(distill)} distillation ({sum(r['status'] == 'ok' for r in distill)} finished, "
        f"{sum(r['status'] != 'ok' for r in distill)} failed), {len(train)} teacher/student training, "
        f"{len(records) - len(distill) - len(train)} other",
        f"- code versions: {counted(r.get('code_version') for r in records)}",
        f"- devices: {counted(r.get('device') for r in records)}",
    ]
    lines += [f"- {lib}: {versions}" for lib, versions in library_versions(records).items()]
    if failed:
        lines += ["", f"### Failed runs ({len(failed)})", "", "| run folder | reason |", "|---|---|"]
        lines += [f"| `{escape(r.get('run_dir'))}` | {escape(r.get('reason') or 'no reason given')} |" for r in failed]
    if train:
        lines += [
            "",
            "### Training runs (teachers, TT/FT student initialisations)",
            "",
            "| checkpoint | arch | dataset | init | epochs | top-1 | run folder |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in train:
            cfg, final = r.get("config") or {}, r.get("final") or {}
            init = (r.get("origination") or {}).get("init", cfg.get("init"))
            top1 = final.get("top1")
            lines.append(
                f"| {escape(r.get('checkpoint', '?'))} | {escape(cfg.get('arch'))} | {escape(cfg.get('dataset'))} | "
                f"{escape(init)} | {escape(cfg.get('epochs'))} | {'–' if top1 is None else f'{top1:.2f}'} | "
                f"`{escape(r.get('run_dir'))}` |"
            )
    lines += ["", f"### Files the loader skipped ({len(problems)})", ""]
    lines += [f"- `{path}`: {reason}" for path, reason in problems] or ["- none"]
    return lines + [""]


def largest_effect_section(rows):
    """One line: the largest temperature effect relative to its seed spread (a description, chosen after looking)."""
    best = findings.largest_T_effect(rows)
    if best is None:
        return []
    key, a, b, diff, spread, cells = best
    return [
        "## Largest temperature effect",
        "",
        f"{selection.describe(key)}: T={b:g} minus T={a:g} = {diff:+.2f} points; over seeds, this difference has a "
        f"std of {spread:.2f} ({abs(diff) / max(spread, 1e-9):.1f}x), and each of the two temperatures a std of at "
        f"most {cells:.2f} ({abs(diff) / max(cells, 1e-9):.1f}x). A description chosen after looking at the results; "
        "the findings below are the pre-specified tests.",
        "",
    ]


def signed(x):
    return "–" if x is None else f"{x:+.2f}"


def p_text(p):
    """'= 0.014', or '< 1e-05' when no bootstrap draw reached the estimate's distance from 0."""
    return f"< {1 / stats.DRAWS:.0e}" if p == 0 else f"= {p:.2g}"


def label_text(f):
    """'present, at least m' (the label and its size qualifier)."""
    return f["label"] + (f", {f['size']}" if f["size"] else "")


def effect_text(f, adjusted=False):
    """'+0.65 (+0.41 to +0.90)' with the raw (or the Holm-adjusted) interval; the summary when no estimate."""
    if f["estimate"] is None:
        return f["summary"] or "–"  # a finding without seed noise, or why it is not tested
    low, high = (f["low_adj"], f["high_adj"]) if adjusted else (f["low"], f["high"])
    if low is None:
        return f"{signed(f['estimate'])} (no interval)"
    return f"{signed(f['estimate'])} ({signed(low)} to {signed(high)})"


def summary_table(decided):
    """The short Markdown table of README and docs/LAB.md, from findings.json's objects."""
    lines = [
        "| # | the paper says | setting | label | effect (Holm-adjusted interval), points |",
        "|---|---|---|---|---|",
    ]
    for f in decided:
        setting = re.sub(r" · data \w+", "", f["primary"]) if f["primary"] else "–"  # not tested: no primary
        lines.append(
            f"| {f['id']} | {escape(f['claim'])} ({f['source']}) | {escape(setting)} | {label_text(f)} | "
            f"{escape(effect_text(f, adjusted=True))} |"
        )
    return lines


def findings_section(decided):
    """Markdown lines: how a label is decided, a table of every finding, then each one's evidence."""
    m = stats.MARGIN
    lines = [
        "## Findings",
        "",
        f"Each of the paper's conclusions, decided by one pre-specified statistic (> 0: the paper's claim, in points "
        f"of top-1) with a bootstrap interval of the seed noise of its own cells (`analysis/stats.py`). The smallest "
        f"effect of interest is m = {m:g} point: about one seed std of a student's final top-1 in the lab, and about "
        f"1/6 of what distillation adds over labels alone there. Labels: **present** (interval above 0), "
        f"**opposite** (below 0), **absent** (inside -m..+m: no effect of m or more), **undecided** (otherwise), "
        f"**not tested** (runs missing); 'at least m' or 'below m' says how large. The findings with an interval "
        f"form one family: Holm's procedure at {stats.ALPHA:g} gives each its level, and the label comes from the "
        "interval at that level (the raw 95% interval beside it).",
        "",
        "| # | finding (paper) | setting | label | effect, raw 95% interval | Holm-adjusted interval (level) | "
        "at m/2 · at 2m | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in decided:
        adjusted = (
            "–" if f["low_adj"] is None else f"{signed(f['low_adj'])} to {signed(f['high_adj'])} ({f['level']:.4f})"
        )
        lines.append(
            f"| {f['id']} | {escape(f['claim'])} ({f['source']}) | {escape(f['primary'] or f['setting'])} | "
            f"{LABEL_MARKS[f['label']]} {label_text(f)} | {escape(effect_text(f))} | {adjusted} | "
            f"{f['label_half_margin']} · {f['label_double_margin']} | {f['seeds'] or '–'} |"
        )
    lines.append("")
    for f in decided:
        lines += [f"### {f['id']}. {f['claim']} ({f['source']})", "", f"- **{label_text(f)}**: {f['summary']}"]
        if f["p"] is not None:
            lines.append(f"- p {p_text(f['p'])}, Holm-adjusted p {p_text(f['p_adj'])}")
        lines += [f"- statistic: {f['statistic']}", f"- setting: {f['setting']}"]
        if f["primary"]:
            lines.append(f"- primary: {f['primary']}")
        if any(v is not None for v in f["sigma"].values()):
            noise = ", ".join(f"{v:.2f} ({g})" if v is not None else f"none ({g})" for g, v in f["sigma"].items())
            lines.append(f"- seed noise of the compared cells: sigma = {noise} points")
        lines += [f"- {e}" for e in f["evidence"]]
        for b in f["budgets"]:
            steps = "" if b["steps"] is None else f" = {b['steps']} steps"
            interval = "" if b["low"] is None else f" ({signed(b['low'])} to {signed(b['high'])})"
            lines.append(f"- trend at {b['epochs']} epochs{steps}: {signed(b['trend'])}{interval}")
        for s in f["secondary"]:
            interval = "no interval" if s["low"] is None else f"raw 95% {signed(s['low'])} to {signed(s['high'])}"
            size = f", {s['size']}" if s["size"] else ""
            lines.append(f"- {s['kind']}: {s['setting']}: {signed(s['estimate'])} ({interval}): {s['label']}{size}")
        if f["settings_agree"] is not None:
            lines.append("- the settings agree" if f["settings_agree"] else "- **the settings disagree**")
        if f["scope"]:
            lines.append(f"- scope: {f['scope']}")
        lines += [f"- note: {n}" for n in f["notes"]] + [""]
    return lines


def integrity_section(rows, expected):
    """Markdown lines: the data keys of the runs (never pooled) and the expected runs without a result."""
    lines = [
        "## Integrity",
        "",
        "Data keys (the built-in data's sizes, augmentation and image folder; never pooled):",
        "",
    ]
    for key, datasets, synth in integrity.data_keys(rows):
        sizes = ", ".join(f"{k}={v}" for k, v in sorted(synth.items())) if isinstance(synth, dict) and synth else "–"
        runs = ", ".join(f"{d} ({n} runs)" for d, n in sorted(datasets.items(), key=lambda kv: str(kv[0])))
        lines.append(f"- `{key}`: {runs}; synth sizes: {sizes}")
    if not rows:
        lines.append("- no distillation runs")
    lines.append("")
    if expected is None:
        return lines + ["Expected runs: no manifest/expected.json.", ""]
    missing = integrity.missing_runs(expected, rows)
    if not missing:
        return lines + [f"Expected runs: all {len(expected)} expected runs finished.", ""]
    lines += [f"Expected runs: {len(missing)} of {len(expected)} without a finished result:", ""]
    return lines + [f"- {integrity.describe_run(e)}" for e in missing] + [""]


def properties_section(rows, records):
    """Markdown lines: what the lab's teachers and labels-only students are (the regime the findings live in)."""
    lines = [
        "## Teachers and students on labels alone",
        "",
        "The teachers' test top-1; their train-set statistics at T = 1: the mean top probability p(1st), H_rel "
        "and H_rel^-max (Table 1), and the share of their wrong-class probability on the true class's coarse "
        "group and on its sibling (for data with a class hierarchy; chance = a uniform tail).",
        "",
        "| teacher | dataset | origination | test top-1 | p(1st) | H_rel | H_rel^-max | wrong mass: group (chance) "
        "| sibling (chance) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    teachers = {}
    for r in rows:
        if r.get("teacher") and r.get("stats_T") == 1.0:
            teachers.setdefault(r["teacher"], r)
    for name, r in sorted(teachers.items()):
        mass = r.get("wrong_class_mass") or {}
        origin = "from scratch" if r["teacher_from_scratch"] else f"fine-tuned {r['teacher_target_epochs']} ep"
        rel = [f"{m['share']:.1%} ({m['chance']:.1%})" if m else "–" for m in (mass.get("group"), mass.get("sibling"))]
        p1 = r["sorted_softmax"][0] if r.get("sorted_softmax") else None
        lines.append(
            f"| {name} | {selection.dataset_label(r)} | {origin} | {r['teacher_top1']:.2f} | "
            f"{'–' if p1 is None else f'{p1:.3f}'} | {r['H_rel']:.3f} | {r['H_rel_without_max']:.3f} | "
            f"{rel[0]} | {rel[1]} |"
        )
    if not teachers:
        lines.append("| (no distillation at T = 1) | | | | | | | | |")
    labels = [r for r in rows if r.get("method") == "labels" and r.get("status") == "ok"]
    lines += ["", "Students trained on labels alone (the no-KD reference, `distill.py --baseline`):", ""]
    for key, members in sorted(
        groups_of(labels, ["dataset", "student", "student_init", "opt", "bs", "epochs"]).items(),
        key=lambda kv: aggregate.sort_key(kv[0]),
    ):
        mean, std, n = aggregate.mean_std_n([r["top1"] for r in members])
        lines.append(
            f"- {key[0]} · {key[1]} ({key[2]}) · {key[3]} bs{key[4]} {key[5]} ep: {mean:.2f} ± {std:.2f} ({n} seeds)"
        )
    if not labels:
        lines.append("- none")
    trained = [r for r in records if r.get("kind") == "train" and r.get("status") == "ok"]
    if trained:
        lines += ["", "Checkpoints trained by train_teacher.py (test top-1 of the checkpoint's own dataset):", ""]
        lines += [f"- {r.get('checkpoint')}: {(r.get('final') or {}).get('top1', float('nan')):.2f}" for r in trained]
    return lines + [""]


def groups_of(rows, columns):
    out = {}
    for r in rows:
        out.setdefault(tuple(r.get(c) for c in columns), []).append(r)
    return out


def power_section(rows):
    """Markdown lines: seed spread and convergence of every configuration at its longest budget."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("top1") is not None]
    columns = [c for c in aggregate.CONFIG_COLUMNS if c != "epochs"]
    table = []
    for key, members in groups_of(ok, columns).items():
        top = max(r["epochs"] for r in members)
        runs = [r for r in members if r["epochs"] == top]
        _, std, n = aggregate.mean_std_n([r["top1"] for r in runs])
        curves = [dict(r["curve"]) for r in runs if r.get("curve")]
        epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        last = [e for e in epochs if e >= 0.75 * top]
        mean_curve = [sum(c[e] for c in curves) / len(curves) for e in last]
        move = max(mean_curve) - min(mean_curve) if len(mean_curve) > 1 else None
        table.append((dict(zip(columns, key)), top, std, n, move, len(last)))
    lines = [
        "## Power and convergence",
        "",
        "For every configuration at its longest budget: the seed std of the final top-1, and how much the "
        "seed-mean test top-1 moves (max - min) over the evaluations in the last quarter of its epochs.",
        "",
    ]
    if not table:
        return lines + ["No finished runs.", ""]
    stds = [t[2] for t in table if t[3] > 1]
    moves = [t[4] for t in table if t[4] is not None]
    if stds:
        lines.append(
            f"- seed std of top-1: mean {sum(stds) / len(stds):.2f}, max {max(stds):.2f} points over "
            f"{len(stds)} configurations with several seeds"
        )
    if moves:
        worst = max(table, key=lambda t: -1 if t[4] is None else t[4])
        lines.append(
            f"- last-quarter movement: mean {sum(moves) / len(moves):.2f}, max {max(moves):.2f} points "
            f"({selection.describe(worst[0])}, {worst[1]} ep) over {len(moves)} configurations"
        )
    else:
        lines.append("- last-quarter movement: not measurable (evaluate more often: --eval-every)")
    lines += ["", "| configuration | epochs | seeds | seed std | last-quarter movement |", "|---|---|---|---|---|"]
    for key, top, std, n, move, k in sorted(table, key=lambda t: aggregate.sort_key([str(t[0]), t[1]])):
        name = selection.describe(key) + ("" if key.get("T") is None else f" · T={key['T']:g}")
        if key.get("method") == "labels":
            name += " · labels only"
        lines.append(
            f"| {escape(name)} | {top} | {n} | {std:.2f} | {'–' if move is None else f'{move:.2f} ({k} evals)'} |"
        )
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
                body = ["##" + line if line.startswith("## ") else line for line in text[2:]]  # under "###"
                lines += [f"Table file: [{rel}]({rel})", ""] + body
        if result["key_numbers"]:
            lines += ["Key numbers:", ""] + [f"- {k}: {v}" for k, v in result["key_numbers"].items()] + [""]
    return lines


def write_report(results_dir, out=None, figures_dir=None):
    """Aggregate, draw and check everything under results_dir; write results.csv, figures/, REPORT.md,
    findings.json and which_t.json beside it. Returns (report path, findings, artifacts, problems). Raises
    aggregate.AnalysisError (nothing written) for results it refuses to merge."""
    results_dir = Path(results_dir)
    records, problems = aggregate.load_results(results_dir)
    rows = aggregate.distill_rows(records)
    aggregate.check_duplicates(rows)
    expected = integrity.read_expected(results_dir)
    decided = findings.evaluate(rows, expected)
    best_T = which_t.which_t(rows)
    aggregate.write_csv(aggregate.aggregate(rows), results_dir / "results.csv", aggregate.AGGREGATE_COLUMNS)
    made = figures.make_all(rows, figures_dir or results_dir / "figures")
    out = Path(out or results_dir / "REPORT.md")
    csv_link = os.path.relpath(results_dir / "results.csv", out.parent).replace(os.sep, "/")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# KD temperature study: results report",
        "",
        f"Generated {stamp} from `{results_dir}` by `analysis/report.py`; per-configuration means in "
        f"[results.csv]({csv_link}), the findings in [findings.json](findings.json), which T in "
        "[which_t.json](which_t.json). Accuracy is final test top-1 (%), mean ± std over seeds.",
        "",
    ]
    lines += which_t.section(best_T) + largest_effect_section(rows) + findings_section(decided)
    lines += integrity_section(rows, expected)
    lines += properties_section(rows, records) + power_section(rows)
    lines += provenance_section(records, problems) + artifacts_section(made, out.parent)
    atomic_write(out.parent / "findings.json", json.dumps(decided, indent=1) + "\n")
    atomic_write(out.parent / "which_t.json", json.dumps(best_T, indent=1) + "\n")
    path = atomic_write(out, "\n".join(lines) + "\n")
    return path, decided, made, problems


def main(argv=None):
    p = argparse.ArgumentParser(description="Write RESULTS/REPORT.md (plus results.csv and figures/) from run folders.")
    p.add_argument("results", help="folder holding run folders (at any depth)")
    p.add_argument("--out", default=None, help="report path (default: RESULTS/REPORT.md); findings.json goes beside it")
    args = p.parse_args(argv)
    prog = "report.py"
    if not Path(args.results).is_dir():
        print(f"{prog}: error: RESULTS '{args.results}' is not a folder", file=sys.stderr)
        return 2
    try:
        path, decided, made, problems = write_report(args.results, args.out)
    except aggregate.AnalysisError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    aggregate.print_problems(problems, prog)
    for f in decided:
        print(f"{f['id']:>2} {label_text(f):>24}: {f['claim']}")
    print(f"{prog}: {sum(bool(m['files']) for m in made.values())} of {len(made)} figures/tables made -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
