"""Pin every image of an overlay to the digest its tag points at now: `make pin-images`
(the prod overlay), after pushing a release and before applying it; commit the result.

Each entry of the overlay's `images:` gets a `digest:` (kustomize then renders
`name@sha256:...`, which no one can move as a tag can be moved). The digest comes from the
registry through `crane digest IMAGE`, else `docker buildx imagetools inspect`; or any
command given with --resolver that prints the digest of the image it is given.
tests/test_deploy_images.py checks that every prod image is an entry here (or a digest)."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
PROD = Path(__file__).resolve().parent / "overlays" / "prod"


def default_resolver() -> list[str]:
    if shutil.which("crane"):
        return ["crane", "digest"]
    if shutil.which("docker"):
        return ["docker", "buildx", "imagetools", "inspect", "--format", "{{.Manifest.Digest}}"]
    sys.exit("pin_images: needs crane or docker buildx (or --resolver)")


def reference(entry: dict[str, str]) -> str:
    """The tagged image an `images:` entry renders, before pinning."""
    name = entry.get("newName", entry["name"])
    return f"{name}:{entry['newTag']}" if "newTag" in entry else name


def pin(kustomization: str, digests: dict[str, str]) -> str:
    """The kustomization with `digest:` set in each named entry of `images:`."""
    for name, digest in digests.items():
        entry = re.compile(rf"^(  - name: {re.escape(name)}\n)((?:    .*\n)*)", re.M)
        match = entry.search(kustomization)
        if match is None:
            raise SystemExit(f"pin_images: no `- name: {name}` entry in images:")
        fields = re.sub(r"^    digest: .*\n", "", match[2], flags=re.M)
        replacement = f"{match[1]}{fields}    digest: {digest}\n"
        kustomization = kustomization[: match.start()] + replacement + kustomization[match.end() :]
    return kustomization


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="deploy/pin_images.py", description=__doc__)
    parser.add_argument("overlay", nargs="?", type=Path, default=PROD)
    parser.add_argument("--resolver", help="command printing an image's digest")
    args = parser.parse_args(argv)
    path = args.overlay / "kustomization.yaml"
    text = path.read_text()
    resolver = shlex.split(args.resolver) if args.resolver else default_resolver()
    digests = {}
    for entry in yaml.safe_load(text).get("images", []):
        image = reference(entry)
        found = subprocess.run(
            [*resolver, image], capture_output=True, text=True, check=True, timeout=120
        ).stdout.strip()
        if not DIGEST.fullmatch(found):
            raise SystemExit(f"pin_images: {image}: not a digest: {found!r}")
        digests[entry["name"]] = found
        sys.stdout.write(f"{image} -> {found}\n")
    path.write_text(pin(text, digests))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
