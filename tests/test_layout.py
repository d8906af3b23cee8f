"""The package's floors: a module imports only from its own floor or below (cli > workflows >
interfaces > reports > outputs > training > model > scores / preprocessing / artifacts), there is no
import cycle, and rating a scan never imports the training code."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bidsqc"

#: each top-level part of the package and its floor; a module may import its own part or a lower floor
FLOORS = {"cli": 8, "workflows": 7, "interfaces": 6, "reports": 5, "outputs": 4, "training": 3, "model": 2,
          "scores": 1, "preprocessing": 1, "artifacts": 1, "": 0}


def _modules():
    """{dotted module name: path} of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name, path, modules):
    """The package modules ``name`` imports anywhere in its source (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from package import submodule`` imports the submodule
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                       for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _part(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_import_goes_to_the_same_part_or_a_lower_floor(graph):
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            own, other = _part(module), _part(target)
            if other != own and FLOORS[other] >= FLOORS[own]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that reach up or sideways: " + ", ".join(sorted(wrong))


def test_no_import_cycle(graph):
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_layering_check_sees_a_module_that_reaches_up():
    """The checks themselves, on the old layout's detectors module, which imported the ensemble
    from below while the ensemble imported it."""
    old = {"bidsqc.scores": {"bidsqc.model.ensemble"}, "bidsqc.model.ensemble": {"bidsqc.scores"}}
    with pytest.raises(AssertionError, match="bidsqc.scores -> bidsqc.model.ensemble"):
        test_every_import_goes_to_the_same_part_or_a_lower_floor(old)
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle(old)


def test_rating_imports_no_training_module():
    """What a user embedding the QC workflow imports: the model, the workflows, the interfaces
    and the participant level, none of which loads bidsqc.training."""
    names = sorted(n for n in _modules() if _part(n) in ("model", "workflows", "interfaces")) + ["bidsqc.cli.run"]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('bidsqc.training')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
