"""The package's layers: a module imports only from its own layer or the ones below it."""

import ast
import pathlib

import sgjax

# Lowest first. bench measures everything; cli dispatches to every command.
LAYERS = [
    {"errors", "config", "lazy", "resources"},
    {"data"},
    {"core"},
    {"evaluation"},
    {"run"},
    {"analysis"},
    {"api", "train_cli", "sweep"},
    {"bench"},
    {"cli", "__init__"},
]
ROOT = pathlib.Path(sgjax.__file__).parent


def layer(part: str) -> int:
    """The layer of a top-level name under sgjax (a module or a subpackage)."""
    return next(i for i, names in enumerate(LAYERS) if part.removesuffix(".py") in names)


def imported_parts(tree: ast.AST):
    """The top-level sgjax names a module imports, with their line numbers."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[1], node.lineno) for a in node.names if a.name.startswith("sgjax."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "sgjax":
                continue
            if len(parts) > 1:
                yield parts[1], node.lineno
            else:
                yield from ((a.name, node.lineno) for a in node.names)


def test_every_top_level_name_has_a_layer():
    names = {p.name for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    for name in names:
        layer(name)  # StopIteration names a module the layers forgot


def test_no_module_imports_from_a_layer_above_its_own():
    back_edges = []
    for path in ROOT.rglob("*.py"):
        own = layer(path.relative_to(ROOT).parts[0])
        for part, line in imported_parts(ast.parse(path.read_text())):
            if layer(part) > own:
                back_edges.append(f"{path.relative_to(ROOT)}:{line} imports sgjax.{part}")
    assert not back_edges, "\n".join(back_edges)
