"""Build the agent alone: the fleetrun-agent wheel and the single-file agent.

    python scripts/build_agent.py [--out dist] [--no-deps] [-- PIP_ARGS...]

Writes, under --out:
  fleetrun_agent-VERSION-py3-none-any.whl  the agent's distribution (pip install it)
  fleetrun-agent.pyz                       the agent as one file, for `python3 FILE ...`
  fleetrun-agent-deps/                     the agent's dependencies, to keep beside it

The packages are copied from src/ into a staging directory beside
packaging/fleetrun-agent/pyproject.toml, so that the wheel holds only fleetrun,
fleetrun.core and fleetrun.agent. The dependencies are installed for the Python running
this script; PIP_ARGS builds them for another one, e.g.
`-- --python-version 3.12 --platform manylinux2014_aarch64 --only-binary=:all:`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging" / "fleetrun-agent"
PACKAGES = ("core", "agent")  # under src/fleetrun, with fleetrun/__init__.py
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def stage(into: Path) -> Path:
    """The agent's packages, alone, under `into`/src/fleetrun."""
    if into.exists():
        shutil.rmtree(into)
    package = into / "src" / "fleetrun"
    package.mkdir(parents=True)
    for name in ("__init__.py", "py.typed"):
        shutil.copy2(ROOT / "src" / "fleetrun" / name, package / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / "src" / "fleetrun" / name, package / name, ignore=IGNORE)
    return package


def build_wheel(build: Path, out: Path) -> Path:
    project = build / "wheel"
    stage(project)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PACKAGING / name, project / name)
    shutil.copy2(ROOT / "LICENSE", project / "LICENSE")
    before = set(out.glob("fleetrun_agent-*.whl"))
    for old in before:
        old.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(out),
            str(project),
        ],
        check=True,
    )
    (wheel,) = out.glob("fleetrun_agent-*.whl")
    return wheel


def build_zipapp(build: Path, out: Path) -> Path:
    source = build / "zipapp"
    package = stage(source)
    app = package.parent
    shutil.copy2(PACKAGING / "zipapp" / "__main__.py", app / "__main__.py")
    target = out / "fleetrun-agent.pyz"
    zipapp.create_archive(app, target, interpreter="/usr/bin/env python3", compressed=True)
    target.chmod(0o755)
    return target


def install_deps(out: Path, pip_args: list[str]) -> Path:
    deps = out / "fleetrun-agent-deps"
    if deps.exists():
        shutil.rmtree(deps)
    project = tomllib.loads((PACKAGING / "pyproject.toml").read_text())["project"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(deps),
            *pip_args,
            *project["dependencies"],
        ],
        check=True,
    )
    return deps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--build", type=Path, default=ROOT / "build" / "fleetrun-agent")
    parser.add_argument("--no-deps", action="store_true", help="skip fleetrun-agent-deps/")
    parser.add_argument("pip_args", nargs="*", help="after --: passed to pip for the deps")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    built = [build_wheel(args.build, args.out), build_zipapp(args.build, args.out)]
    if not args.no_deps:
        built.append(install_deps(args.out, args.pip_args))
    for path in built:
        print(path)


if __name__ == "__main__":
    main()
