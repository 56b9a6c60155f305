"""The import graph of the featuremaps package and the arrows that run back up (issue 24).

Arrows: every ``import featuremaps.x`` / ``from featuremaps.x import y`` in a module, at its top or inside a
function (to ``featuremaps.x.y`` where that is a module), and every string that names a module exactly (a
registry such as ``frameworks.FRAMEWORKS``, imported with ``importlib``). The root package, whose public API is
imported lazily by name, is left out as a target, and so is a submodule's implicit import of its package. An
arrow runs back up when it closes a cycle: the number reported is the fewest arrows whose removal leaves no
cycle (found exactly by trying removals, smallest first, among the arrows on cycles), and they are listed.

    python tools/import_graph.py [src/featuremaps]
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def arrows(mods: dict[str, Path]) -> set[tuple[str, str]]:
    edges = set()
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in mods:
                targets = [node.value]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("featuremaps"):
                    edges.add((name, t))
    return {(a, b) for a, b in edges if b != "featuremaps" and a != b}


def has_cycle(nodes, edges) -> bool:
    graph = {n: [b for a, b in edges if a == n] for n in nodes}
    state: dict[str, int] = {}

    def visit(n) -> bool:
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1 or (m not in state and visit(m)):
                return True
        state[n] = 2
        return False

    return any(n not in state and visit(n) for n in nodes)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src/featuremaps")
    mods = modules(root)
    edges = arrows(mods)
    inside = sorted(e for e in edges if has_cycle(mods, edges) and _on_cycle(e, edges))
    print(f"{len(mods)} modules, {len(edges)} arrows, {len(inside)} arrows on cycles")
    for k in range(len(inside) + 1):
        for cut in itertools.combinations(inside, k):
            if not has_cycle(mods, edges - set(cut)):
                print(f"arrows running back up: {k}")
                for a, b in cut:
                    print(f"  {a} -> {b}")
                return


def _on_cycle(edge, edges) -> bool:
    """Whether ``edge`` (a, b) lies on a cycle: a is reachable from b."""
    a, b = edge
    seen, stack = {b}, [b]
    while stack:
        n = stack.pop()
        if n == a:
            return True
        for x, y in edges:
            if x == n and y not in seen:
                seen.add(y)
                stack.append(y)
    return False


if __name__ == "__main__":
    main()
