"""The console's vendored scripts are the ones the manifest names (version, source,
sha256), and the pages load nothing else: no CDN, nothing fetched at run time."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import fleetrun.server.web as web

VENDOR = Path(web.__file__).parent / "static" / "vendor"
TEMPLATES = Path(web.__file__).parent / "templates"


def test_every_vendored_file_matches_its_manifest_entry():
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    files = {p.name for p in VENDOR.iterdir() if p.name != "MANIFEST.json"}
    assert files == set(manifest)
    for name, entry in manifest.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == entry["sha256"]
        assert entry["source"].startswith("https://registry.npmjs.org/")
        assert re.fullmatch(r"\d+\.\d+\.\d+", entry["version"])


def test_pages_load_scripts_and_styles_only_from_the_server_and_no_inline_script():
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        for url in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert not url.startswith(("http:", "https:", "//")), (template.name, url)
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"\son[a-z]+=", text), template.name  # no inline handlers
