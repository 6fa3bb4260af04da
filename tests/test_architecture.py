"""The shape of the code base: no import cycles, dependencies pointing one way, light imports.

The cycle check reads every import statement (lazy ones inside functions too) of the packages'
modules with :mod:`ast`, and finds cycles between modules and between packages (a package being
``ltc_rl.<name>`` or a top-level package such as ``agents``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ltc_rl", "agents", "envs")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name an import statement of ``path`` may refer to (``from a import b`` gives ``a``, ``a.b``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (not counting a module importing its own package's ``__init__``)."""
    modules = {_module_name(path): path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")}
    return {module: {name for name in _imported_names(path, module)
                     if name in modules and name != module and not module.startswith(name + ".")}
            for module, path in modules.items()}


def package_of(module: str) -> str:
    """``ltc_rl.rl.ppo`` -> ``ltc_rl.rl``, ``ltc_rl.errors`` -> itself, ``agents.agent`` -> ``agents``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ltc_rl" and len(parts) > 1 else parts[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is not None:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        packages.setdefault(package_of(module), set()).update(
            package_of(name) for name in imported if package_of(name) != package_of(module))
    return packages


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert _package_graph({"ltc_rl.cells.ltc": {"ltc_rl.kernels.fast"}, "ltc_rl.kernels.fast": {"ltc_rl.cells"},
                           "ltc_rl.cells": set()}) == {"ltc_rl.cells": {"ltc_rl.kernels"},
                                                       "ltc_rl.kernels": {"ltc_rl.cells"}}


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_packages() -> None:
    assert cycles(_package_graph(import_graph())) == []


def test_only_the_commands_import_the_commands() -> None:
    importers = {module for module, imported in import_graph().items()
                 if package_of(module) != COMMANDS and any(package_of(name) == COMMANDS for name in imported)}
    assert importers == set()


#: The commands (``ltc_rl.cli``: ``ltc-train``, ``ltc-evaluate`` ...) are the top layer: they may use every package.
COMMANDS = "ltc_rl.cli"


def test_the_library_never_imports_agents_or_envs() -> None:
    offending = {module: sorted(package_of(name) for name in imported if package_of(name) in ("agents", "envs"))
                 for module, imported in import_graph().items()
                 if module.startswith("ltc_rl") and package_of(module) != COMMANDS}
    assert {module: names for module, names in offending.items() if names} == {}


def _loaded_after(statement: str, prefixes: Iterable[str]) -> list[str]:
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({tuple(prefixes)!r}))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_ROOT),
                            timeout=120, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


HEAVY = ("stable_baselines3", "gymnasium.envs.mujoco", "mujoco", "sb3_contrib", "ray", "matplotlib", "pandas")


@pytest.mark.parametrize("statement, also_heavy", [
    ("import ltc_rl", ("torch", "gymnasium", "numpy")),
    ("import ltc_rl.errors", ("torch", "gymnasium", "numpy")),
    ("import ltc_rl.wirings", ("torch", "gymnasium")),
    ("import envs", ("torch",)),
])
def test_light_imports_stay_light(statement: str, also_heavy: tuple[str, ...]) -> None:
    """``import ltc_rl``, ``ltc_rl.wirings`` and ``envs`` (which every subprocess env worker imports) load none
    of the heavy libraries: the package root is lazy and envs' shared constants live in ``ltc_rl.env_api``."""
    assert _loaded_after(statement, HEAVY + also_heavy) == []


def test_the_lazy_package_root_serves_its_public_names() -> None:
    loaded = _loaded_after("import ltc_rl\nassert ltc_rl.LTCCell.__name__ == 'LTCCell'\n"
                           "assert set(ltc_rl.__all__) <= set(dir(ltc_rl))\n"
                           "[getattr(ltc_rl, name) for name in ltc_rl.__all__]", ("stable_baselines3",))
    assert loaded, "the policies' names should have imported stable-baselines3"
