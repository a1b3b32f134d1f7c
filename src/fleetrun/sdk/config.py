"""Where the CLI and the SDK's `Client()` find the server and the token: --server/--token
(the SDK's arguments), then FLEETRUN_SERVER/FLEETRUN_TOKEN (and FLEETRUN_CA_FILE,
FLEETRUN_INSECURE), then the config file `fleetrun login` writes ($FLEETRUN_CONFIG, or
~/.config/fleetrun/config.toml), then the local default. One reader for both, so that a
script and the command line always talk to the same server as the same principal.

Light on purpose (no httpx): the CLI imports it before it knows it needs a client."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fleetrun.core.errors import ValidationError

DEFAULT_SERVER = "http://127.0.0.1:8470"


def config_path() -> Path:
    explicit = os.environ.get("FLEETRUN_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fleetrun" / "config.toml"


@dataclass(frozen=True)
class Profile:
    server: str
    token: str | None
    ca_file: str | None = None  # trust this CA for an https server with a private CA
    insecure: bool = False  # plain http:// to another host allowed (never saved)


def read_file(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(
            f"The config file {path} cannot be read ({exc}): fix or delete it."
        ) from exc
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


def resolve(
    server: str | None, token: str | None, ca_file: str | None = None, insecure: bool = False
) -> Profile:
    saved: dict[str, str] | None = None

    def from_file(key: str) -> str | None:
        nonlocal saved
        if saved is None:
            saved = read_file()
        return saved.get(key)

    server = server or os.environ.get("FLEETRUN_SERVER") or from_file("server") or DEFAULT_SERVER
    token = token or os.environ.get("FLEETRUN_TOKEN") or from_file("token")
    ca_file = ca_file or os.environ.get("FLEETRUN_CA_FILE") or from_file("ca_file")
    if not server.startswith(("http://", "https://")):
        raise ValidationError(f"The server URL {server!r} must start with http:// or https://.")
    if ca_file and not Path(ca_file).expanduser().is_file():
        raise ValidationError(f"The CA file {ca_file} does not exist.")
    insecure = insecure or os.environ.get("FLEETRUN_INSECURE", "").lower() in ("1", "true", "yes")
    return Profile(server=server.rstrip("/"), token=token, ca_file=ca_file, insecure=insecure)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def write_file(profile: Profile, path: Path | None = None) -> Path:
    """Write the profile, readable by its owner only (it holds a token)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [f"server = {_quote(profile.server)}"]
    if profile.token:
        lines.append(f"token = {_quote(profile.token)}")
    if profile.ca_file:
        lines.append(f"ca_file = {_quote(str(Path(profile.ca_file).expanduser().resolve()))}")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
