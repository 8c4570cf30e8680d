"""The code's shape: imports point one way (down the layers), and modules stay small.

Layers of gateway/, lowest first; a module imports from its own package, from another
package of its own layer only where the layer says so, and from lower layers:

    contracts                      wire schemas, stream config; imports nothing of ours
    foundations                    gateway.settings, .errors, .metrics, .wakeup
    gateway.broker                 NATS connection and consumers
    gateway.feed | gateway.auth    independent of each other
    gateway.http                   ASGI pieces: connection, hand-over, page, query
    top                            gateway.hub, .stream, .stocks, .ops, .app, .server, .__main__

Imports are read with `ast`, so those inside functions and `if TYPE_CHECKING:` count too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("contracts", "gateway", "publisher")
HERE = Path(__file__).name
MAX_MODULE_LINES = 300
# The line limit holds for the benchmark and resilience harnesses too (not for tests/).
SIZED = (*OURS, "bench", "resilience")

FOUNDATIONS = (
    "gateway.settings",
    "gateway.errors",
    "gateway.metrics",
    "gateway.wakeup",
    "gateway.delivery",
)
TOP = (
    "gateway",
    "gateway.hub",
    "gateway.opening",
    "gateway.stream",
    "gateway.stocks",
    "gateway.ops",
    "gateway.app",
    "gateway.server",
    "gateway.process",
    "gateway.worker",
    "gateway.workers",
)
TOP_MAIN = "gateway.__main__"
# (rank, packages or modules in that layer, whether those may import each other)
LAYERS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("contracts", ("contracts",), True),
    ("foundations", FOUNDATIONS, True),
    ("broker", ("gateway.broker",), True),
    ("feed|auth", ("gateway.feed", "gateway.auth"), False),
    ("http", ("gateway.http",), True),
    ("top", (*TOP, TOP_MAIN), True),
)


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, packages: tuple[str, ...] = OURS) -> dict[str, Path]:
    """Every module of `packages` under `root`, by dotted name."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imports(root: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of one of our packages, anywhere in each module's syntax tree."""
    found: list[Import] = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package)
                # `from gateway.feed import sse` imports the module gateway.feed.sse.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            else:
                continue
            found.extend(
                Import(name, target, path, node.lineno)
                for target in targets
                if target.split(".")[0] in OURS
            )
    return found


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = importer.split(".")
    package = parts if is_package else parts[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def layer_of(module: str) -> tuple[int, str] | None:
    """(rank, the package or module it belongs to) for a contracts or gateway module."""
    for rank, (_, members, _) in enumerate(LAYERS):
        for member in members:
            if module == member or (
                module.startswith(member + ".") and member not in (*TOP, *FOUNDATIONS)
            ):
                return rank, member
    return None


def violation(edge: Import) -> str | None:
    """Why `edge` breaks the import direction, or None when it is allowed."""
    importer_root = edge.importer.split(".")[0]
    imported_root = edge.imported.split(".")[0]
    if importer_root == imported_root and importer_root != "gateway":
        return None  # contracts and publisher are one layer each
    if importer_root == "contracts":
        return f"{edge.importer} imports {edge.imported} (contracts import nothing of ours)"
    if {importer_root, imported_root} == {"gateway", "publisher"}:
        return (
            f"{edge.importer} imports {edge.imported} (gateway and publisher share only contracts)"
        )
    if importer_root == "publisher":
        return None
    mine, theirs = layer_of(edge.importer), layer_of(edge.imported)
    if mine is None:
        return None  # reported once, with the module
    if theirs is None:
        return f"{edge.importer} imports {edge.imported}, which is in no layer"
    (my_rank, my_group), (their_rank, their_group) = mine, theirs
    if their_rank < my_rank or my_group == their_group:
        return None
    if their_rank > my_rank:
        return f"{edge.importer} imports {edge.imported} (upward)"
    if not LAYERS[my_rank][2]:
        return f"{edge.importer} imports {edge.imported} (sideways: {LAYERS[my_rank][0]})"
    return None


def violations(root: Path) -> list[str]:
    known = modules(root)
    found = [
        f"{edge.where(root)}: {reason}"
        for edge in imports(root, known)
        if (reason := violation(edge)) is not None
    ]
    found.extend(
        f"{path.relative_to(root)}: {name} is in no layer: add it to LAYERS in {HERE}"
        for name, path in known.items()
        if name.startswith("gateway") and layer_of(name) is None
    )
    return list(dict.fromkeys(found))  # `from m import a, b` is one import of m


def test_imports_point_down_the_layers() -> None:
    found = violations(ROOT)
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_no_module_is_longer_than_300_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in modules(ROOT, SIZED).values()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them):\n" + "\n".join(long)


# The checker itself, on small trees: it must see what it is meant to refuse.

CASES = [
    (
        "gateway/http/page.py",
        "from gateway.hub import Hub",
        "gateway.http.page imports gateway.hub (upward)",
    ),
    (
        "gateway/settings.py",
        "from gateway.auth import keys",
        "gateway.settings imports gateway.auth.keys (upward)",
    ),
    ("gateway/feed/live.py", "from gateway.auth.grants import Grant", "(sideways: feed|auth)"),
    ("gateway/auth/access.py", "import gateway.feed.sse", "(sideways: feed|auth)"),
    (
        "gateway/broker/consumer.py",
        "def f():\n    from ..feed import sse",
        "gateway.broker.consumer imports gateway.feed.sse (upward)",
    ),
    ("gateway/errors.py", "if TYPE_CHECKING:\n    from gateway.http.query import Q", "(upward)"),
    ("contracts/stream.py", "from gateway.errors import E", "(contracts import nothing of ours)"),
    ("contracts/stream.py", "import publisher.app", "(contracts import nothing of ours)"),
    (
        "publisher/app.py",
        "from gateway.feed import sse",
        "(gateway and publisher share only contracts)",
    ),
    (
        "gateway/hub.py",
        "from publisher.app import build_app",
        "(gateway and publisher share only contracts)",
    ),
    ("gateway/lifespan.py", "from gateway.hub import Hub", "gateway.lifespan is in no layer"),
]
ALLOWED = [
    ("gateway/feed/client.py", "from gateway.feed.live import Subscriber"),
    ("gateway/feed/client.py", "from . import live"),
    ("gateway/settings.py", "from gateway.errors import E"),
    ("gateway/http/page.py", "from gateway.auth.grants import Grant"),
    ("gateway/http/page.py", "from gateway.feed import sse"),
    ("gateway/hub.py", "from gateway.stream import S"),
    ("gateway/__main__.py", "from gateway.app import build_app"),
    ("gateway/broker/consumer.py", "from contracts.stream import ensure_stream"),
    ("publisher/app.py", "from contracts.stream import ensure_stream"),
    ("publisher/app.py", "from publisher.ticks import PriceWalk"),
    ("gateway/auth/tokens.py", "import jwt"),
]
SKELETON = [
    "gateway/__init__.py",
    "gateway/hub.py",
    "gateway/app.py",
    "gateway/stream.py",
    "gateway/settings.py",
    "gateway/errors.py",
    "gateway/__main__.py",
    "gateway/http/__init__.py",
    "gateway/http/page.py",
    "gateway/http/query.py",
    "gateway/feed/__init__.py",
    "gateway/feed/sse.py",
    "gateway/feed/live.py",
    "gateway/feed/client.py",
    "gateway/auth/__init__.py",
    "gateway/auth/keys.py",
    "gateway/auth/grants.py",
    "gateway/auth/access.py",
    "gateway/auth/tokens.py",
    "gateway/broker/__init__.py",
    "gateway/broker/consumer.py",
    "contracts/__init__.py",
    "contracts/stream.py",
    "publisher/__init__.py",
    "publisher/app.py",
    "publisher/ticks.py",
]


def _tree(root: Path, module: str, source: str) -> Path:
    for skeleton in SKELETON:
        (root / skeleton).parent.mkdir(parents=True, exist_ok=True)
        (root / skeleton).touch()
    (root / module).write_text(source + "\n")
    return root


@pytest.mark.parametrize(("module", "source", "expected"), CASES)
def test_the_checker_refuses_an_import_against_the_layers(
    tmp_path: Path, module: str, source: str, expected: str
) -> None:
    found = violations(_tree(tmp_path, module, source))
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith(f"{module}:")


@pytest.mark.parametrize(("module", "source"), ALLOWED)
def test_the_checker_allows_an_import_down_or_within_a_package(
    tmp_path: Path, module: str, source: str
) -> None:
    assert violations(_tree(tmp_path, module, source)) == []
