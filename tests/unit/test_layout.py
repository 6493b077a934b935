"""The package layout keeps its promises: no import cycle, and the core is free of Ray.

Reads the sources with ``ast`` (nothing is imported), so the graph is the one a reader
sees: every ``import`` and ``from … import`` in ``speakerscribe/`` and ``deployments/``,
type-checking-only imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("speakerscribe", "deployments")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (a ``from pkg import mod`` counts as pkg.mod)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, by its first module)."""
    seen: set[str] = set()
    found: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        if node in trail:
            found.append([*trail[trail.index(node) :], node])
            return
        if node in seen:
            return
        seen.add(node)
        for target in sorted(edges.get(node, ())):
            walk(target, [*trail, node])

    for start in sorted(edges):
        walk(start, [])
    return found


def test_no_import_cycle():
    edges = graph()
    # a package's __init__ re-exporting its own modules is not a cycle a reader trips on
    edges = {
        name: {t for t in targets if not (t.startswith(name + ".") or name.startswith(t + "."))}
        for name, targets in edges.items()
    }
    assert cycles(edges) == []


def test_the_core_is_free_of_ray_and_of_the_deployments():
    for name, path in modules().items():
        if not name.startswith("speakerscribe"):
            continue
        tree = ast.parse(path.read_text())
        roots = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        assert not roots & {"ray", "deployments", "tools"}, (name, roots)


def test_module_sizes_are_reported(capsys):
    sizes = sorted(
        ((len(p.read_text().splitlines()), name) for name, p in modules().items()), reverse=True
    )
    with capsys.disabled():
        print("\nlargest modules:", ", ".join(f"{name} {lines}" for lines, name in sizes[:8]))
    assert sizes
