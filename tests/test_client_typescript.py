"""gateway/static as an npm-style package: price-client.d.ts matches what price-client.js
exports, an example page type-checks against it with `tsc --noEmit` (npm's typescript,
installed into tests/typescript/node_modules), and the served folder stays harmless."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartGateway

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "gateway" / "static"
EXAMPLE = ROOT / "tests" / "typescript"
TSC = EXAMPLE / "node_modules" / ".bin" / "tsc"
# The same command as `make install`: the example's devDependencies, no lock file.
NPM_INSTALL = ["npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--silent"]
_IMPORT = re.compile(r'^import .* from "\./([\w.-]+)";$', re.M)
_WORKER = re.compile(r'new URL\("\./([\w.-]+)", import\.meta\.url\)')


def node_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} missing in CI: .ci/run installs Debian's nodejs and npm")
    pytest.skip(f"no {name}: apt-get install -y nodejs npm (CI installs them)")


def tsc() -> Path:
    node_tool("node")
    if not TSC.exists() or not (EXAMPLE / "node_modules" / "@price-gateway" / "client").exists():
        npm = node_tool("npm")
        subprocess.run([npm, *NPM_INSTALL[1:]], cwd=EXAMPLE, check=True, timeout=300)
    return TSC


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def declared_exports() -> set[str]:
    text = (STATIC / "price-client.d.ts").read_text()
    return set(re.findall(r"^export (?:const|function) (\w+)", text, re.M))


def test_the_example_page_type_checks_against_the_package() -> None:
    result = run(tsc(), "--noEmit", "-p", EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_declarations_name_exactly_what_the_module_exports() -> None:
    script = "import(process.argv[1]).then(m => console.log(JSON.stringify(Object.keys(m))))"
    result = run(node_tool("node"), "-e", script, (STATIC / "price-client.js").as_uri())
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == declared_exports()


def test_the_package_ships_every_module_the_client_loads() -> None:
    package = json.loads((STATIC / "package.json").read_text())
    assert package["type"] == "module"
    main = package["exports"]["."]
    assert list(main) == ["types", "default"], "types first, as TypeScript requires"
    files = set(package["files"])
    for target in [main["types"], main["default"], *package["exports"].values()]:
        if isinstance(target, str):
            assert target.removeprefix("./") in files, target
    # Everything price-client.js imports, directly or not, and the worker it starts.
    loaded, todo = set(), ["price-client.js"]
    while todo:
        name = todo.pop()
        loaded.add(name)
        text = (STATIC / name).read_text()
        todo += [n for n in _IMPORT.findall(text) + _WORKER.findall(text) if n not in loaded]
    assert loaded | {"price-client.d.ts"} == files
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert package["version"] == version[1]


async def test_the_package_files_are_served_as_data_never_as_script(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(wait_connected=False)
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for name in ("price-client.d.ts", "package.json"):
            response = await client.get(f"/static/{name}")
            assert response.status_code == 200, name
            assert "javascript" not in response.headers["content-type"], name
            # With nosniff, a browser refuses to run what is not served as JavaScript.
            assert response.headers["x-content-type-options"] == "nosniff", name
