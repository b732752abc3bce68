"""docs/ARCHITECTURE.md kept true: every module of sasa_viz imports only from the parts
below its own, and no two modules import each other, directly or round a circle."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sasa_viz"

# the parts, lowest first: a module may import from its own part and the parts below it
PARTS = [
    ("basics", {"sasa_viz.files", "sasa_viz.numbers", "sasa_viz.distributed"}),
    ("attention", {"sasa_viz.attention"}),
    ("models", {"sasa_viz.models"}),
    ("command-line checks", {"sasa_viz.cli"}),
    ("inspection", {"sasa_viz.inspection"}),
    ("drawing", {"sasa_viz.drawing"}),
    ("choices", {"sasa_viz.choices"}),
    ("lesson", {"sasa_viz.lesson"}),
    ("commands and app", {"sasa_viz.train", "sasa_viz.training_sets", "sasa_viz.evaluate",
                          "sasa_viz.render", "sasa_viz.ui"}),
    ("the package's front door", {"sasa_viz"}),
]
LOOSE_AT_MOST = 12


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> int:
    """The index in PARTS of the part `module` belongs to (the longest prefix)."""
    found = [(len(prefix), k) for k, (_, prefixes) in enumerate(PARTS) for prefix in prefixes
             if module == prefix or module.startswith(prefix + ".")]
    assert found, f"{module} belongs to no part: add it to PARTS and docs/ARCHITECTURE.md"
    return max(found)[1]


def imports_of(path: Path) -> set:
    """The sasa_viz modules a file imports (absolute imports; the package uses no
    relative ones), names imported from a package counted as its modules when they are."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import; write sasa_viz.… in full"
            if node.module and node.module.split(".")[0] == "sasa_viz":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                              else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "sasa_viz"}
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_parts(module):
    own = part_of(module)
    for imported in imports_of(MODULES[module]):
        if imported == "sasa_viz" or imported.startswith("sasa_viz.ui") and \
                module.startswith("sasa_viz.ui"):
            continue
        assert part_of(imported) <= own, (
            f"{module} ({PARTS[own][0]}) imports {imported} ({PARTS[part_of(imported)][0]}), "
            f"a part above it")


def test_no_import_circles():
    graph = {m: {i for i in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    done, path = set(), []

    def visit(module):
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("an import circle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for imported in graph[module]:
            if imported != "sasa_viz" and not module.startswith(imported + "."):
                visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_at_most_a_dozen_modules_loose_at_the_top():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_AT_MOST, loose


def test_the_architecture_page_names_every_part():
    page = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    for _, prefixes in PARTS:
        for prefix in prefixes:
            assert f"`{prefix}`" in page, prefix
