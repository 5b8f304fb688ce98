"""The floors hold: the light core never loads the JAX side, and no module imports itself back."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JAX_SIDE = {"jax", "jaxlib", "flax", "optax", "orbax", "proxies"}
TOP = ("regmix.pipeline", "regmix.cli")  # the two places allowed to import both halves


def modules(package: str) -> list[str]:
    base = ROOT / package
    out = []
    for path in sorted(base.rglob("*.py")):
        if "data" in path.relative_to(base).parts or path.name == "__main__.py":
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_light_core_never_loads_the_jax_side():
    light = [m for m in modules("regmix") if not m.startswith(TOP)]
    code = (
        "import importlib, json, sys\n"
        f"side = {sorted(JAX_SIDE)!r}\n"
        "found = {}\n"
        f"for m in {light!r}:\n"
        "    importlib.import_module(m)\n"
        "    bad = sorted(n for n in sys.modules if n.split('.')[0] in side)\n"
        "    if bad: found[m] = bad[:3]; break\n"
        "print(json.dumps(found))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}, f"the first light module to load the JAX side: {proc.stdout}"
    assert len(light) >= 25  # the walk found the modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The repository modules `module` imports, at any depth of its code."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known and n != module}
    return out


def test_no_import_circles():
    known = {m: None for m in modules("regmix") + modules("proxies")}
    paths = {}
    for m in known:
        p = ROOT / Path(*m.split("."))
        paths[m] = p / "__init__.py" if p.is_dir() else p.with_suffix(".py")
    graph = {m: imports_of(m, paths[m], set(known)) for m in known}
    # a package's __init__ that re-exports its submodules is not a way back into them
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not (paths[d].name == "__init__.py" and m.startswith(d + "."))}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles[:5])
