"""Imports flow one way: no cycle between our modules, and each package only imports the
layers below it (read from the source with ``ast``, lazy imports inside functions
included, so a cycle hidden in a function body is caught too)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from ingestion import project

REPO_ROOT = project.REPO_ROOT
# package -> where its modules live
PACKAGES = {
    "ingestion": REPO_ROOT / "ingestion",
    "local_report_api": REPO_ROOT / "local_report_api",
    "retail_dev": REPO_ROOT / "retail_dev",
    "retention_report": REPO_ROOT / "retention_report",
    "sales_mart_support": REPO_ROOT / "dags" / "sales_mart_support",
    "sales_mart_plugin": REPO_ROOT / "sales_mart_plugin",
    "deploy": REPO_ROOT / "deploy",
    "benchmarks": REPO_ROOT / "benchmarks",
}
# what each package may import from the others (the layers)
ALLOWED = {
    "local_report_api": set(),
    "retention_report": set(),
    # the runtime package holds the product only (issue: one package per responsibility)
    "ingestion": set(),
    # the development commands: the embedded warehouse, the local API, the report
    "retail_dev": {"ingestion", "local_report_api", "retention_report"},
    "sales_mart_support": {"ingestion"},
    "sales_mart_plugin": {"ingestion"},
    "deploy": {"ingestion", "local_report_api", "retail_dev"},
    "benchmarks": {"ingestion", "local_report_api", "retail_dev", "sales_mart_support"},
}


def _module_name(package: str, path: Path) -> str:
    parts = [package, *path.relative_to(PACKAGES[package]).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The modules ``module`` imports; ``from pkg import sub`` depends on ``pkg.sub``
    only (a package's ``__init__`` re-exporting its submodules is not a cycle)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level] if node.level else []
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                submodule = f"{prefix}.{alias.name}"
                names.add(submodule if submodule in modules else prefix)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {
        _module_name(package, path): path
        for package, root in PACKAGES.items()
        for path in root.rglob("*.py")
    }
    names = set(modules)
    return {
        module: {name for name in _imports(path, module, names) if name in names and name != module}
        for module, path in modules.items()
    }


def test_the_module_graph_has_no_cycle() -> None:
    graph = _graph()
    assert len(graph) > 20, sorted(graph)  # the scan really found our modules
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_packages_import_only_the_layers_below_them() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if (source := module.split(".")[0]) != (package := target.split(".")[0])
        and package not in ALLOWED[source]
    )
    assert not wrong, wrong
