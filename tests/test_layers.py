"""Imports point one way: core <- store <- storage <- engines <- services <- resources <- assets <- pipelines <- apps.

Read from the source with `ast`, so a lazy import inside a function counts as much as one at the top."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["core", "store", "storage", "engines", "services", "resources", "assets", "pipelines", "apps"]
# Outside packages a layer must not use: the pure core and the store know nothing of Dagster or the web
# (core uses DuckDB only in memory, as the engine that routes a dataframe with the pipeline's own SQL).
FORBIDDEN_OUTSIDE = {"core": {"dagster", "pandera", "fastapi", "uvicorn"}, "store": {"dagster", "fastapi"},
                     "storage": {"dagster", "fastapi", "duckdb"},
                     "engines": {"dagster", "fastapi", "duckdb"}, "services": {"dagster", "fastapi", "uvicorn"}}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def layering_violations(root: Path) -> list[str]:
    """`file:line imports X` for every import of a higher layer, or of a package the layer must not use."""
    rank = {layer: index for index, layer in enumerate(LAYERS)}
    problems = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            for line, module in imported_modules(path):
                top = module.split(".")[0]
                higher = top in rank and rank[top] > rank[layer]
                if higher or top in FORBIDDEN_OUTSIDE.get(layer, set()):
                    problems.append(f"{path.relative_to(root)}:{line} imports {module}")
    return problems


def test_no_layer_imports_a_higher_one() -> None:
    assert layering_violations(REPO) == []


def test_tests_import_no_test_module_or_conftest() -> None:
    offenders = [f"{path.name}:{line} imports {module}" for path in sorted((REPO / "tests").glob("*.py"))
                 for line, module in imported_modules(path) if module == "conftest" or module.startswith("test_")]
    assert offenders == []


@pytest.mark.parametrize(("layer", "source", "expected"), [
    ("core", "from resources.store import DuckDBStore\n", "core/bad.py:1 imports resources.store"),
    ("store", "def f():\n    import dagster\n", "store/bad.py:2 imports dagster"),
    ("assets", "from apps.cli import main\n", "assets/bad.py:1 imports apps.cli"),
])
def test_the_check_finds_an_upward_import(tmp_path: Path, layer: str, source: str, expected: str) -> None:
    for name in LAYERS:
        (tmp_path / name).mkdir()
    (tmp_path / layer / "bad.py").write_text(source)
    assert layering_violations(tmp_path) == [expected]


def test_status_names_are_spelled_only_in_the_annotation_vocabulary() -> None:
    """Statuses are `core.annotations.Status`; a module spelling one as a string literal drifts on a rename."""
    from core.annotations import Status

    names = set(Status)
    sources = [path for layer in LAYERS for path in sorted((REPO / layer).rglob("*.py"))
               if path != REPO / "core" / "annotations.py"]
    spelled = [f"{path.relative_to(REPO)}:{node.lineno}" for path in sources
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and node.value in names]
    assert spelled == []
