"""The import layers (README "Architecture"): core ← lit ← entry points, with reporting and benchmarks on top.

Every import in every module is read with ``ast`` (function-level imports included, relative ones resolved):
- ``core/`` imports no Lightning, Hydra or OmegaConf, and nothing from the package outside ``core/``;
- ``lit/`` imports no Hydra and nothing from the entry points or the run-folder / CLI helpers around them;
- ``evaluation/`` (sample-quality metrics, free of the training loop) imports neither Lightning nor Hydra, nor ``lit/``
  or the entry points;
- no module of the package imports ``benchmarks`` or ``tests``; no test imports another test module (only
  ``tests.helpers``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.run import REPO

PACKAGE = "ddpm_lightning"
ENTRY_POINTS = (
    "train",
    "sample",
    "evaluate",
    "classifier",
    "report",  # the Hydra entry points
    "cli",
    "build",
    "schema",
    "speed",
    "rundir",
    "quiet",
    "hydra_callbacks",
)  # and what only they use
FRAMEWORKS = {"lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf"}

# Known crossings (file, module and its submodules), each to be deleted by the change that removes it; a stale entry
# fails the test, so none can linger:
ALLOWED: set[tuple[str, str]] = set()  # none now


def allowed(edge: tuple[str, str]) -> bool:
    return any(edge[0] == file and under(edge[1], module) for file, module in ALLOWED)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> Iterator[str]:
    """Every module ``path`` imports, anywhere in the file (``from a import b`` yields ``a`` and ``a.b``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y / from .. import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names if alias.name != "*")


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(root: Path) -> set[tuple[str, str]]:
    """(file, imported module) for every import that crosses a layer, in the package and the tests under ``root``."""
    found = set()
    entry_points = tuple(f"{PACKAGE}.{e}" for e in ENTRY_POINTS)
    for path in sorted((root / PACKAGE).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        layer = module_name(path, root).split(".")[1:2]
        for module in imports(path, root):
            top = module.split(".")[0]
            if module == PACKAGE:
                continue  # `from ddpm_lightning import x`: judged by `ddpm_lightning.x`
            bad = top in ("benchmarks", "tests")
            if layer == ["core"]:
                bad |= top in FRAMEWORKS or (top == PACKAGE and not under(module, f"{PACKAGE}.core"))
            elif layer == ["lit"]:
                bad |= top == "hydra" or under(module, *entry_points)
            elif layer == ["evaluation"]:
                bad |= top in FRAMEWORKS - {"omegaconf"} or under(module, f"{PACKAGE}.lit", *entry_points)
            if bad:
                found.add((rel, module))
    for path in sorted((root / "tests").rglob("*.py")):
        for module in imports(path, root):
            if under(module, "tests") and not under(module, "tests.helpers") and module != "tests":
                found.add((path.relative_to(root).as_posix(), module))
    return found


def test_core_and_evaluation_load_no_framework() -> None:
    """At run time too (imports of imports): core (networks included) and evaluation load no Lightning, Hydra or
    OmegaConf. One interpreter for both: each import costs seconds on a busy machine."""
    code = (
        "import sys, ddpm_lightning.core.schedules, ddpm_lightning.core.samplers, ddpm_lightning.core.degradations, "
        "ddpm_lightning.core.networks.cnn, ddpm_lightning.core.networks.unet, ddpm_lightning.evaluation.quality, "
        "ddpm_lightning.evaluation.denoising, ddpm_lightning.evaluation.confidence, "
        "ddpm_lightning.evaluation.classifier; "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FRAMEWORKS)}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_imports_point_down_only() -> None:
    crossing = sorted(edge for edge in violations(REPO) if not allowed(edge))
    assert not crossing, "imports that cross a layer (README 'Architecture'):\n" + "\n".join(
        f"  {file}: {module}" for file, module in crossing
    )
    stale = {edge for edge in ALLOWED if edge[1] not in set(imports(REPO / edge[0], REPO))}
    assert not stale, f"allowed crossings that no longer exist, delete them from ALLOWED: {sorted(stale)}"


@pytest.mark.parametrize(
    ("file", "body", "edge"),
    [
        ("ddpm_lightning/core/x.py", "def f():\n    import lightning.pytorch as pl\n", "lightning.pytorch"),
        ("ddpm_lightning/core/x.py", "from ..lit import module\n", "ddpm_lightning.lit"),
        ("ddpm_lightning/core/sub/x.py", "from ...train import main\n", "ddpm_lightning.train"),
        ("ddpm_lightning/lit/x.py", "def f():\n    from hydra.utils import instantiate\n", "hydra.utils"),
        ("ddpm_lightning/lit/x.py", "from ddpm_lightning import rundir\n", "ddpm_lightning.rundir"),
        ("ddpm_lightning/evaluation/x.py", "import lightning\n", "lightning"),
        ("ddpm_lightning/report.py", "from benchmarks.common import x\n", "benchmarks.common"),
        ("tests/lit/test_x.py", "from tests.test_report import TINY\n", "tests.test_report"),
    ],
)
def test_the_checker_sees_every_kind_of_import(tmp_path: Path, file: str, body: str, edge: str) -> None:
    path = tmp_path / file
    path.parent.mkdir(parents=True)
    path.write_text(body)
    (tmp_path / "tests").mkdir(exist_ok=True)
    assert (file, edge) in violations(tmp_path)
    helper = "from tests.helpers.run import TINY\n" if file.startswith("tests/") else ""
    path.write_text("import torch\nfrom ddpm_lightning.core import schedules\n" + helper)
    assert violations(tmp_path) == set()
