"""Where the CLI and the SDK's `Client()` find the server and the token: --server/--token
(the SDK's arguments), then FLEETRUN_SERVER/FLEETRUN_TOKEN (and FLEETRUN_CA_FILE,
FLEETRUN_INSECURE), then the config file `fleetrun login` writes ($FLEETRUN_CONFIG, or
~/.config/fleetrun/config.toml), then the local default. One reader for both, so that a
script and the command line always talk to the same server as the same principal.

The file holds profiles. Its top-level keys are the default profile (the only one a file
written before named profiles has), and `[profiles.NAME]` tables the named ones:

    server = "https://fleet.example.com:8470"
    token = "frt_..."

    [profiles.staging]
    server = "https://staging.example.com:8470"
    token = "frt_..."
    output = "json"

A profile chosen by name (--profile, FLEETRUN_PROFILE, `Client(profile=...)`) is taken
as a whole: its server, token and CA file win over FLEETRUN_SERVER/FLEETRUN_TOKEN/
FLEETRUN_CA_FILE, so that a token from the environment never goes to the profile's
server. Flags and arguments still win over it.

Light on purpose (no httpx): the CLI imports it before it knows it needs a client."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetrun.core.errors import ValidationError

DEFAULT_SERVER = "http://127.0.0.1:8470"
DEFAULT_PROFILE = "default"  # the file's top-level keys
KEYS = ("server", "token", "ca_file", "output")  # what a profile may hold


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
    output: str | None = None  # the CLI's output format (json, yaml, table, text)


def chosen_profile(profile: str | None = None) -> str | None:
    """The profile named by the caller, else by FLEETRUN_PROFILE; None: the default."""
    name = profile or os.environ.get("FLEETRUN_PROFILE") or None
    return None if name == DEFAULT_PROFILE else name


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(
            f"The config file {path} cannot be read ({exc}): fix or delete it."
        ) from exc


def _section(data: dict[str, Any], profile: str | None) -> dict[str, Any] | None:
    if profile is None:
        return data
    profiles = data.get("profiles")
    found = profiles.get(profile) if isinstance(profiles, dict) else None
    return found if isinstance(found, dict) else None


def read_file(
    path: Path | None = None, profile: str | None = None, *, missing_ok: bool = False
) -> dict[str, str]:
    """One profile's keys (the default profile: the top-level ones); {} when the file
    does not exist. A named profile the file does not have is an error that says how to
    make it ({} with `missing_ok`)."""
    path = path or config_path()
    section = _section(_load(path), profile)
    if section is None and missing_ok:
        return {}
    if section is None:
        raise ValidationError(
            f"No profile {profile!r} in {path}: create it with `fleetrun login "
            f"--profile {profile} --server URL --token TOKEN`, or name another."
        )
    return {k: str(v) for k, v in section.items() if k in KEYS and isinstance(v, str)}


def profile_names(path: Path | None = None) -> list[str]:
    """The profiles the file holds, the default one first when it has one."""
    data = _load(path or config_path())
    names = [DEFAULT_PROFILE] if "server" in data else []
    profiles = data.get("profiles")
    if isinstance(profiles, dict):
        names += sorted(k for k, v in profiles.items() if isinstance(v, dict))
    return names


def resolve(
    server: str | None,
    token: str | None,
    ca_file: str | None = None,
    insecure: bool = False,
    *,
    profile: str | None = None,
    saved: dict[str, str] | None = None,
) -> Profile:
    """`saved`: the profile's keys when the caller has read them (None: read the file)."""
    name = chosen_profile(profile)

    def from_file(key: str) -> str | None:
        nonlocal saved
        if saved is None:
            saved = read_file(profile=name)
        return saved.get(key)

    def env(key: str) -> str | None:
        # a named profile is taken whole: the environment's server or token is not mixed in
        return None if name is not None else os.environ.get(key)

    server = server or env("FLEETRUN_SERVER") or from_file("server") or DEFAULT_SERVER
    token = token or env("FLEETRUN_TOKEN") or from_file("token")
    ca_file = ca_file or env("FLEETRUN_CA_FILE") or from_file("ca_file")
    if not server.startswith(("http://", "https://")):
        raise ValidationError(f"The server URL {server!r} must start with http:// or https://.")
    if ca_file and not Path(ca_file).expanduser().is_file():
        raise ValidationError(f"The CA file {ca_file} does not exist.")
    insecure = insecure or os.environ.get("FLEETRUN_INSECURE", "").lower() in ("1", "true", "yes")
    return Profile(server=server.rstrip("/"), token=token, ca_file=ca_file, insecure=insecure)


def saved_output(profile: str | None = None) -> str | None:
    """The output format the chosen profile saves (`output = "json"`), if any."""
    name = chosen_profile(profile)  # one the file lacks is for the client to report
    return read_file(profile=name, missing_ok=True).get("output")


def write_file(profile: Profile, path: Path | None = None, name: str | None = None) -> Path:
    """Save `profile` as the profile `name` (None: the default one), keeping the file's
    other profiles and this profile's other keys (its output format). Readable by its
    owner only (it holds tokens)."""
    path = path or config_path()
    data = _load(path)
    name = None if name == DEFAULT_PROFILE else name
    if name is None:
        section = data
    else:
        profiles = data.setdefault("profiles", {})
        section = profiles.setdefault(name, {})
    section["server"] = profile.server
    section.pop("token", None)
    section.pop("ca_file", None)
    if profile.token:
        section["token"] = profile.token
    if profile.ca_file:
        section["ca_file"] = str(Path(profile.ca_file).expanduser().resolve())
    if profile.output:
        section["output"] = profile.output
    _write(path, data)
    return path


def remove_profile(name: str | None = None, path: Path | None = None) -> bool:
    """Forget the profile `name` (None: the default one); False when there was none.
    The file goes when no profile is left in it."""
    path = path or config_path()
    data = _load(path)
    name = None if name == DEFAULT_PROFILE else name
    if name is None:
        if "server" not in data and "token" not in data:
            return False
        for key in KEYS:
            data.pop(key, None)
    else:
        profiles = data.get("profiles")
        if not isinstance(profiles, dict) or name not in profiles:
            return False
        del profiles[name]
        if not profiles:
            del data["profiles"]
    if data:
        _write(path, data)
    else:
        path.unlink(missing_ok=True)
    return True


def _write(path: Path, data: dict[str, Any]) -> None:
    import tomli_w

    # the default profile's keys first: a table's keys must come before any table
    ordered = {k: v for k, v in data.items() if not isinstance(v, dict)}
    ordered.update({k: v for k, v in data.items() if isinstance(v, dict)})
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(tomli_w.dumps(ordered))
    os.replace(tmp, path)
