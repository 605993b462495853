"""Named servers, as `spacetime server list|add|set-default` keeps them: one small TOML file in the config dir.

The file is `~/.config/autopilot-sync/cli.toml` (the directory the desktop keeps the user's Nostr key in):

    default_server = "local"

    [[server]]
    name = "local"
    url = "http://127.0.0.1:3000"
    control_url = "http://127.0.0.1:3100"
    key_file = "/home/me/.config/autopilot-sync/nostr.key"   # optional; the default is the user's key

Without a file there is one server, `local`, pointing at `./dev up`'s host and control, and it is the default. A
server's `control_url` is where commands trade the Nostr key for a session token; a server without one (a real
SpacetimeDB, say) is used anonymously unless a token is given.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from autopilot_sync.durable_files import write_atomically

CONFIG_FILE_NAME = "cli.toml"
#: The built-in server: the host and control `autopilot-sync up` (`./dev up`) starts.
LOCAL = "local"
LOCAL_URL = "http://127.0.0.1:3000"
LOCAL_CONTROL_URL = "http://127.0.0.1:3100"
#: A configuration file is a few lines; anything larger is not one.
MAX_CONFIG_BYTES = 256 * 1024


class ServerConfigError(Exception):
    """The configuration file or a server argument is wrong; the message says how to fix it."""


def config_dir() -> Path:
    """`~/.config/autopilot-sync`: the desktop's config dir, where the user's Nostr key lives too."""
    return Path("~/.config/autopilot-sync").expanduser()


def config_path() -> Path:
    """Where the server list is kept."""
    return config_dir() / CONFIG_FILE_NAME


@dataclass(frozen=True, slots=True)
class Server:
    """One named host: its base URL, the control service that issues tokens for it, and the key to prove there."""

    name: str
    url: str
    control_url: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class ServerList:
    """Every configured server and the default's name."""

    servers: tuple[Server, ...]
    default: str | None

    def find(self, name_or_url: str) -> Server | None:
        """The server with this name, or whose URL this is (trailing slashes ignored)."""
        url = name_or_url.rstrip("/")
        return next((s for s in self.servers if s.name == name_or_url), None) or next(
            (s for s in self.servers if s.url == url), None
        )

    def with_server(self, server: Server, *, make_default: bool) -> ServerList:
        """This list with `server` added (refused when its name exists already)."""
        if any(s.name == server.name for s in self.servers):
            raise ServerConfigError(f"a server named {server.name!r} exists already; pick another name")
        default = server.name if make_default or self.default is None else self.default
        return ServerList((*self.servers, server), default)

    def with_default(self, name_or_url: str) -> ServerList:
        """This list with another default (refused when no server has that name or URL)."""
        found = self.find(name_or_url)
        if found is None:
            raise ServerConfigError(f"no server named {name_or_url!r}; `autopilot-sync server list` shows them")
        return replace(self, default=found.name)


BUILT_IN = ServerList((Server(LOCAL, LOCAL_URL, LOCAL_CONTROL_URL),), LOCAL)


def check_url(url: str, what: str = "--url") -> str:
    """`url` without trailing slashes, when it is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ServerConfigError(f"{what} must be an http:// or https:// URL, not {url!r}")
    return url.rstrip("/")


def load(path: Path | None = None) -> ServerList:
    """The configured servers, or the built-in `local` one when there is no file."""
    target = path or config_path()
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return BUILT_IN
    except OSError as exc:
        raise ServerConfigError(f"cannot read {target}: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ServerConfigError(f"{target} is too large to be a server list")
    try:
        document = tomllib.loads(raw.decode("utf-8"))
        servers = tuple(_server(entry) for entry in document.get("server", []))
        default = document.get("default_server")
        if default is not None and not isinstance(default, str):
            raise ValueError("default_server must be a string")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError, TypeError, ServerConfigError) as exc:
        raise ServerConfigError(f"{target} is not a valid server list ({exc}); fix or remove it") from None
    return ServerList(servers, default)


def _server(entry: object) -> Server:
    if not isinstance(entry, dict):
        raise ValueError("each [[server]] must be a table")
    fields = {key: entry.get(key) for key in ("name", "url", "control_url", "key_file")}
    if not isinstance(fields["name"], str) or not isinstance(fields["url"], str):
        raise ValueError("each [[server]] needs a name and a url")
    for key in ("control_url", "key_file"):
        if fields[key] is not None and not isinstance(fields[key], str):
            raise ValueError(f"{key} must be a string")
    return Server(**fields)  # type: ignore[arg-type]


def save(servers: ServerList, path: Path | None = None) -> Path:
    """Write the list atomically (a crash leaves the old file or the new one)."""
    target = path or config_path()
    lines = ["# autopilot-sync servers (`autopilot-sync server --help`)"]
    if servers.default is not None:
        lines.append(f"default_server = {json.dumps(servers.default)}")
    for server in servers.servers:
        lines += ["", "[[server]]", f"name = {json.dumps(server.name)}", f"url = {json.dumps(server.url)}"]
        if server.control_url:
            lines.append(f"control_url = {json.dumps(server.control_url)}")
        if server.key_file:
            lines.append(f"key_file = {json.dumps(server.key_file)}")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return write_atomically(target, ("\n".join(lines) + "\n").encode("utf-8"), mode=0o600, replace=True)


def resolve(name_or_url: str | None, servers: ServerList) -> Server:
    """The server a command talks to: `--server` (a name, or a URL used as is), else the default."""
    if name_or_url is None:
        if servers.default is None:
            raise ServerConfigError("no default server: pass --server or run `autopilot-sync server set-default NAME`")
        found = servers.find(servers.default)
        if found is None:
            raise ServerConfigError(f"the default server {servers.default!r} is not in the list; set another")
        return found
    found = servers.find(name_or_url)
    if found is not None:
        return found
    if "://" in name_or_url:
        return Server(name_or_url, check_url(name_or_url, "--server"))
    raise ServerConfigError(f"no server named {name_or_url!r}: add it with `autopilot-sync server add` or pass a URL")
