"""What the results folder is made of, so nothing merges silently: data keys, expected runs, code versions.

A results folder may hold runs of several data keys (aggregate.data_key: the built-in data's sizes, the
augmentation, the image folder); they are listed and never pooled (data_key is part of every setting).
grid.py writes <results>/manifest/expected.json, a JSON list of the runs a preset expects (keys
EXPECTED_KEYS); every expected run without a finished result is listed, in the report and in the notes of
each finding whose primary lacks it.
"""

import json
from collections import Counter
from pathlib import Path

from analysis import aggregate, selection

EXPECTED_KEYS = ["dataset", "teacher", "student", "student_init", "method", "signal", "k", "opt", "bs", "epochs",
                 "T", "seed"]  # fmt: skip
LINE_KEYS = [k for k in EXPECTED_KEYS if k not in ("T", "seed")]


def _number(value, kind):
    return None if value is None else kind(value)


def run_key(entry):
    """The identity of an expected run (or of a row) as a tuple of EXPECTED_KEYS, numbers normalised."""
    init = entry.get("student_init")
    return (
        entry.get("dataset"),
        entry.get("teacher"),
        entry.get("student"),
        None if init is None else str(init).lower(),
        entry.get("method"),
        entry.get("signal"),
        _number(entry.get("k"), int),
        entry.get("opt"),
        _number(entry.get("bs"), int),
        _number(entry.get("epochs"), int),
        _number(entry.get("T"), float),
        _number(entry.get("seed"), int),
    )


def read_expected(results_dir):
    """The expected runs of <results_dir>/manifest/expected.json (None without the file)."""
    path = Path(results_dir) / "manifest" / "expected.json"
    if not path.is_file():
        return None
    try:
        expected = json.loads(path.read_text())
        if not isinstance(expected, list) or not all(isinstance(e, dict) for e in expected):
            raise ValueError("not a JSON list of objects")
        for e in expected:
            run_key(e)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
        raise aggregate.AnalysisError(f"{path}: unreadable list of expected runs ({e})") from None
    return expected


def finished_keys(rows):
    """run_key of every finished row, by its dataset and by its image folder's name."""
    out = set()
    for r in rows:
        if r.get("status") == "ok" and r.get("top1") is not None:
            out.add(run_key(r))
            out.add(run_key(dict(r, dataset=selection.dataset_label(r))))
    return out


def missing_runs(expected, rows):
    """The expected runs without a finished result, in the manifest's order."""
    done = finished_keys(rows)
    return [e for e in expected or [] if run_key(e) not in done]


def missing_in(missing, cells):
    """The missing runs whose line (every expected key but T and seed) is the line of one of `cells` (rows)."""
    lines = {run_key(c)[: len(LINE_KEYS)] for c in cells}
    lines |= {run_key(dict(c, dataset=selection.dataset_label(c)))[: len(LINE_KEYS)] for c in cells}
    return [e for e in missing if run_key(e)[: len(LINE_KEYS)] in lines]


def describe_run(entry):
    """'synth-fine · synth-fine-ft4 → test_resnet · sgd bs64 128 ep · T=8 · seed 2'."""
    text = selection.describe({k: entry.get(k) for k in LINE_KEYS if k != "method"})
    method = entry.get("method")
    if method == "labels":
        text += " · labels only"
    elif method not in (None, "kd"):
        text += f" · {method}"
    T = entry.get("T")
    return text + ("" if T is None else f" · T={float(T):g}") + f" · seed {entry.get('seed')}"


def data_keys(rows):
    """[(data key, {dataset: runs}, synth sizes)] of the distillation rows."""
    out = {}
    for r in rows:
        entry = out.setdefault(r.get("data_key"), (Counter(), (r.get("config") or {}).get("synth")))
        entry[0][selection.dataset_label(r)] += 1
    return [(key, dict(counts), synth) for key, (counts, synth) in sorted(out.items(), key=lambda kv: str(kv[0]))]


def code_versions(rows):
    """{code version: runs} of the rows."""
    return dict(Counter(str(r.get("code_version")) for r in rows).most_common())
