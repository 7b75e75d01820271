"""The layering and the threat-model boundary, enforced on the source (not by good manners).

Layers, bottom to top; a module may import only its own layer or lower ones (attacks and
metrics are siblings that never import each other: the server composes them):

    core → data, models → training, defenses → config, assembly, run_dir, protocol
         → attacks | metrics → federation, strategies → studies, compare, analysis → cli
"""

from __future__ import annotations

import ast
import inspect
import pkgutil
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS: dict[str, int] = {
    "fedls": 0, "fedls.errors": 0, "fedls.registry": 0, "fedls.schema": 0, "fedls.smoothing": 0, "fedls.threat_model": 0,
    "fedls.outputs": 0, "fedls.provenance": 0, "fedls.stats": 0, "fedls.cache": 0,
    "fedls.data": 1, "fedls.models": 1,
    "fedls.training": 2, "fedls.defenses": 2,
    "fedls.config": 3, "fedls.assembly": 3, "fedls.run_dir": 3, "fedls.protocol": 3,
    "fedls.attacks": 4, "fedls.metrics": 4,
    "fedls.federation": 5, "strategies": 5,
    "fedls.studies": 6, "fedls.compare": 6, "fedls.analysis": 6,
    "fedls.cli": 7, "fedls.__main__": 7,
}
SIBLINGS_THAT_NEVER_MEET = {("fedls.attacks", "fedls.metrics"), ("fedls.metrics", "fedls.attacks")}


def unit_of(module: str) -> str | None:
    """The most specific layer entry that owns ``module``."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return name
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every fedls/strategies module imported anywhere in the file (function-level imports too)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("fedls", "strategies")}


def source_files() -> list[Path]:
    return sorted([*ROOT.joinpath("fedls").rglob("*.py"), *ROOT.joinpath("strategies").rglob("*.py")])


def upward_imports() -> list[str]:
    problems = []
    for path in source_files():
        importer = unit_of(module_name(path))
        assert importer is not None, f"{path} belongs to no layer; add its package to LAYERS"
        for imported in sorted(imports_of(path)):
            target = unit_of(imported)
            if target is None or target == importer:
                continue
            if LAYERS[target] > LAYERS[importer] or (importer, target) in SIBLINGS_THAT_NEVER_MEET:
                problems.append(f"{module_name(path)} imports {imported} ({importer} → {target})")
    return problems


def test_no_module_imports_a_layer_above_it() -> None:
    assert upward_imports() == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The test above could pass by finding nothing: check that it finds a planted violation."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from fedls.metrics.inversion import score_inversion\n")
    assert "fedls.metrics.inversion" in imports_of(planted)
    assert unit_of("fedls.metrics.inversion") == "fedls.metrics"
    assert ("fedls.attacks", "fedls.metrics") in SIBLINGS_THAT_NEVER_MEET


@pytest.mark.parametrize("package", ["fedls.attacks.gradient", "fedls.attacks.model"])
def test_no_attack_signature_mentions_ground_truth(package: str) -> None:
    """An attack gets the server's view; ground truth enters only scorers (fedls.metrics)."""
    seen = 0
    for info in pkgutil.walk_packages(import_module(package).__path__, prefix=f"{package}."):
        module = import_module(info.name)
        for _, obj in inspect.getmembers(module):
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            functions = ([obj] if inspect.isfunction(obj)
                         else [m for _, m in inspect.getmembers(obj, inspect.isfunction)] if inspect.isclass(obj) else [])
            for fn in functions:
                seen += 1
                text = str(inspect.signature(fn))
                assert "GroundTruth" not in text and "truth" not in text.lower(), f"{info.name}.{fn.__qualname__}{text}"
    assert seen > 10  # the walk found the attack code
