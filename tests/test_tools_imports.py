"""The scripts in tools/ are run by hand, not imported by the tests: a module they import that moves
(edge_app.central went to fabrication.central) would break them silently. Every name a tool imports from
the project or from a sibling tool must exist."""

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("edge_app", "fabrication", "trainer", "models")


def defined_names(path: Path) -> set[str]:
    """The names a module defines or imports at its top level (read, not run: some tools' modules start Kivy)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}
    return names


def module_file(module: str, tools: Path) -> tuple[Path, bool] | None:
    """Where `module` lives and whether it is a package, or None when there is no such module."""
    if (tools / f"{module}.py").is_file():
        return tools / f"{module}.py", False
    try:
        spec = importlib.util.find_spec(module)
    except ImportError:
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin), spec.submodule_search_locations is not None


def missing_imports(tools: Path) -> list[str]:
    """`tool: module.name` for each first-party or sibling-tool name a script in `tools` cannot import."""
    siblings = {path.stem for path in tools.glob("*.py")}
    missing = []
    for path in sorted(tools.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if node.module.split(".")[0] not in FIRST_PARTY and node.module not in siblings:
                continue
            found = module_file(node.module, tools)
            if found is None:
                missing.append(f"{path.name}: {node.module}")
                continue
            origin, package = found
            names = defined_names(origin)
            missing += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                        if alias.name not in names
                        and not (package and module_file(f"{node.module}.{alias.name}", tools) is not None)]
    return missing


def test_every_tool_imports_what_exists():
    assert missing_imports(ROOT / "tools") == []


def test_a_tool_importing_a_moved_module_is_found(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "bench_old.py").write_text("from edge_app.central import CentralRegistry\n"
                                           "from edge_app.verify import Verifier, NoSuchThing\n"
                                           "from helper import VALUE, GONE\n")
    assert missing_imports(tmp_path) == ["bench_old.py: edge_app.central", "bench_old.py: edge_app.verify.NoSuchThing",
                                         "bench_old.py: helper.GONE"]
