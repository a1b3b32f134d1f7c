"""The fleetrun-agent distribution declares exactly what the agent imports, and the
same requirements as the fleetrun distribution does for them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
AGENT_PACKAGES = ("agent", "core")
# Imported inside a function the agent never calls: core.documents.parse reads document
# text, which only the server and the CLI do (the agent receives documents parsed). And
# pydantic, by core.targets only (the API's target shape), a module no agent module
# imports: test_the_agent_process_loads_no_pydantic proves it.
NOT_ON_THE_AGENT = {"yaml", "pydantic"}


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def _imported_distributions() -> set[str]:
    """Distributions of the third-party modules imported anywhere in fleetrun.agent and
    fleetrun.core, read from their source."""
    modules: set[str] = set()
    for package in AGENT_PACKAGES:
        for path in (ROOT / "src" / "fleetrun" / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"fleetrun", "__future__"}
    third_party -= NOT_ON_THE_AGENT
    owners = packages_distributions()
    return {_name(owners[module][0]) for module in third_party}


def _name(distribution: str) -> str:
    return distribution.lower().replace("_", "-")


def _requirements(project: dict) -> list[str]:
    """Its dependencies and its extras' (the agent's metrics endpoint is an extra)."""
    extras = project.get("optional-dependencies", {}).values()
    return [*project["dependencies"], *(r for extra in extras for r in extra)]


def test_the_agent_distribution_requires_exactly_what_the_agent_imports():
    agent = _project(ROOT / "packaging" / "fleetrun-agent" / "pyproject.toml")
    declared = {_name(Requirement(r).name) for r in _requirements(agent)}
    imported = _imported_distributions()
    assert declared == imported, f"declared {sorted(declared)}, imported {sorted(imported)}"


def test_the_agent_requirements_are_the_same_in_both_distributions():
    agent = {
        Requirement(r).name: str(Requirement(r))
        for r in _requirements(_project(ROOT / "packaging" / "fleetrun-agent" / "pyproject.toml"))
    }
    full = {
        Requirement(r).name: str(Requirement(r))
        for r in _project(ROOT / "pyproject.toml")["dependencies"]
    }
    assert {name: full.get(name) for name in agent} == agent


def test_the_agent_process_loads_no_pydantic():
    """The agent's frames are msgspec structs; pydantic (and its 15 MB) stays off nodes."""
    probe = (
        "import sys, fleetrun.agent.cli, fleetrun.agent.daemon, fleetrun.agent.channel\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'yaml')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
