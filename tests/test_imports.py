"""The repo's modules form no import cycle: each file can be read (and copied) knowing only what it imports."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def repo_modules():
    """{module name: path} of the repo's own modules: the flat scripts and analysis/*."""
    found = {p.stem: p for p in ROOT.glob("*.py")}
    found.update({f"analysis.{p.stem}": p for p in (ROOT / "analysis").glob("*.py") if p.stem != "__init__"})
    return found


def imports_of(path, modules):
    """The repo modules that `path` imports anywhere in the file (top level or inside a function)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in modules}
    return out


def find_cycle(graph):
    """One import cycle as a list of modules [a, b, ..., a], or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_two_modules_import_each_other():
    modules = repo_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    assert graph["distill"] and graph["engine"], "the scan finds the scripts' imports"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
