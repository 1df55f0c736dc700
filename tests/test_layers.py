"""The package's layers, read from the code's own imports (every import, even one inside a
function): the card core is pure, and each folder imports only from the layers below it.

The layers, bottom first, are the ones reader/__init__.py describes. A module may import
its own folder and anything on a lower floor, never a higher one or one beside it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reader"
CARD_MAY_IMPORT = {"cbor2", "cryptography"}

# floor -> the parts of `reader` on it (a folder, or a module at the package root)
FLOORS: list[set[str]] = [
    {"card"},
    {"errors", "system"},
    {"wire"},
    {"modes"},
    {"config"},
    {"bundles", "emulator", "sound", "feedback"},
    {"queue", "transports"},
    {"sync"},
    {"terminal"},
    {"technician", "kiosk"},
    {"devtools"},
    {"cli"},
    {"__main__"},
]
FLOOR = {part: n for n, parts in enumerate(FLOORS) for part in parts}


def imports_of(path: Path) -> set[str]:
    """Every module name `path` imports, relative imports made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            # `from reader import x` imports the module reader.x when there is one
            names.update(f"{base}.{alias.name}" for alias in node.names
                         if (PACKAGE.parent / base.replace(".", "/") / alias.name).exists()
                         or (PACKAGE.parent / f"{base.replace('.', '/')}/{alias.name}.py"
                             ).exists())
    return names


def part_of(module: str) -> str | None:
    """The layer part of a `reader.…` module name (None for the package face itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", sorted((PACKAGE / "card").rglob("*.py")),
                         ids=lambda p: p.name)
def test_the_card_core_imports_only_the_standard_library_cbor2_and_cryptography(path):
    for name in imports_of(path):
        top = name.split(".")[0]
        if top == "reader":
            assert name.startswith("reader.card"), f"{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top in CARD_MAY_IMPORT, (
                f"{path.name} imports {name}: the card core takes bytes and keys, no I/O "
                "library and nothing of the terminal")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_its_own_layer_and_those_below(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own == "__init__":
        return  # the package face: the version and the layout paragraph
    assert own in FLOOR, f"{own} is on no floor of tests/test_layers.py"
    for name in imports_of(path):
        part = part_of(name) if name.startswith("reader.") or name == "reader" else None
        if part is None or part == own:
            continue
        assert FLOOR[part] < FLOOR[own], (
            f"{path.relative_to(PACKAGE)} (floor {FLOOR[own]}, {own}) imports {name} "
            f"(floor {FLOOR[part]}): a layer imports only from the layers below it")


def test_every_layer_part_exists_and_every_part_is_on_a_floor():
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert parts - {"__init__"} == set(FLOOR)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_reads_in_one_sitting(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.relative_to(PACKAGE)} has {lines} lines: split it"


# -- the city's side (city/): its own room --------------------------------------------------

CITY = PACKAGE.parent / "city"
# What the city service may use of the terminal's package: the one wire model, the error
# tree, logging and messages, the TLS context, the settings explainer, the pure COSE.
CITY_MAY_IMPORT = ("reader.wire", "reader.errors", "reader.system", "reader.sync.endpoint",
                   "reader.config.explain", "reader.card.cose")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_terminal_never_imports_the_city_side(path):
    for name in imports_of(path):
        assert name.split(".")[0] != "city", (
            f"{path.relative_to(PACKAGE)} imports {name}: the terminal's package (and its "
            ".deb) never carries the city service")


@pytest.mark.parametrize("path", sorted(CITY.rglob("*.py")), ids=lambda p: p.name)
def test_the_city_side_uses_only_the_shared_parts_of_reader(path):
    for name in imports_of(path):
        if name.split(".")[0] != "reader":
            continue
        assert name.startswith(CITY_MAY_IMPORT), (
            f"city/{path.name} imports {name}: the city shares only "
            f"{', '.join(CITY_MAY_IMPORT)} with the terminal")


@pytest.mark.parametrize("path", sorted(CITY.rglob("*.py")), ids=lambda p: p.name)
def test_every_city_module_reads_in_one_sitting(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"city/{path.name} has {lines} lines: split it"
