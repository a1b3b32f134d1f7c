"""Fetch the console's vendored scripts (htmx and its SSE extension) from the npm
registry, once, into the package: `python scripts/vendor_console_assets.py`.

The versions are pinned in ASSETS below. The script downloads each package's tarball
from registry.npmjs.org, checks it against the registry's published integrity hash,
takes the one file the console serves, and writes it with a manifest
(src/fleetrun/server/web/static/vendor/MANIFEST.json: version, source URL, sha256).
`--check` verifies the files already in the tree against the manifest, offline; the
server never fetches anything at run time, and nothing here needs Node.js.

To move to a new version: change it in ASSETS, run the script, read the diff, commit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
VENDOR = Path(__file__).resolve().parent.parent / "src/fleetrun/server/web/static/vendor"
MANIFEST = VENDOR / "MANIFEST.json"

# file served by the console: (npm package, pinned version, path inside its tarball)
ASSETS = {
    "htmx.min.js": ("htmx.org", "2.0.11", "package/dist/htmx.min.js"),
    "htmx-ext-sse.js": ("htmx-ext-sse", "2.2.4", "package/dist/sse.min.js"),
}


def _get(url: str) -> bytes:
    if not url.startswith(REGISTRY + "/"):
        raise SystemExit(f"refusing to fetch {url}: only {REGISTRY} is used")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https, checked above)
        body: bytes = response.read()
    return body


def _fetch(package: str, version: str, member: str) -> tuple[bytes, str]:
    meta = json.loads(_get(f"{REGISTRY}/{package}/{version}"))
    tarball_url = meta["dist"]["tarball"]
    tarball = _get(tarball_url)
    algorithm, _, expected = meta["dist"]["integrity"].partition("-")
    if base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode() != expected:
        raise SystemExit(f"{tarball_url} does not match the registry's integrity hash")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        extracted = archive.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{member} is not a file in {tarball_url}")
        return extracted.read(), tarball_url


def refresh() -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, (package, version, member) in ASSETS.items():
        data, url = _fetch(package, version, member)
        (VENDOR / name).write_bytes(data)
        manifest[name] = {
            "package": package,
            "version": version,
            "source": f"{url}#{member}",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        print(f"{name}: {package} {version} ({len(data)} bytes)")
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


def check() -> int:
    manifest = json.loads(MANIFEST.read_text())
    bad = [
        name
        for name, entry in manifest.items()
        if hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() != entry["sha256"]
    ]
    for name in bad:
        print(f"{name} does not match its sha256 in {MANIFEST.name}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, offline")
    sys.exit(check() if parser.parse_args().check else refresh())
