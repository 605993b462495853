"""The module publish lane: publish, promote, roll back and verify a module release per environment.

What "publish" means here, exactly (docs/runbooks/deployment.md walks through it):

1. The release is a Python module installed on the target host (`autopilot_sync.module` unless `--module`), or a
   built TypeScript module (`--js-path FILE.js`, what `autopilot-sync build` writes; its bundle is uploaded and kept
   in the ledger). Its tag is `v<module version>-<first 12 hex of the schema hash>` (a bundle's version is
   `js-<first 8 hex of its sha256>`), so the same code and schema always get the same tag.
2. The lane reads the schema the target host serves (`GET /v1/database/:name/schema?version=9`), compares it with
   the release's (`ops/drift.py`) and prints the diff. A breaking change is refused unless `--delete-data` (the host
   refuses it too: SpacetimeDB's automatic-migration rules, ADR 0005).
3. It records the release in the environment's ledger (`ops/ledger.py`): tag, module path, schema, source revision,
   time, drift.
4. Deployment: the release is published to the running host over `PUT /v1/database/:name`
   (`ops/host_publish.py`) with a session token control grants the environment's key, which must be the database's
   owner. Compatible changes apply live and keep the data; the host's refusal (its diff) is a NO-GO. After a
   `--delete-data` publish of a module with `set_trusted_issuer` (the sync module), whose `init` seeded no issuer
   (the module fails closed), the lane names control — the `iss` of its own token — before it verifies (`TRUST`
   line); a refusal is a NO-GO.
5. Verification, once the host serves the release's schema hash: a session token from control (NIP-98 proof with
   the environment's key, scope `sync.subscribe`), a WebSocket connection through the client SDK, a subscription to
   `stream_head` and `active_connection` that must be applied and must show the lane's own connection in presence,
   and a `heartbeat` reducer call that must commit. Each outcome is recorded (`verify` entries): GO or NO-GO.

`promote` publishes to staging (prod) exactly the release verified in dev (staging); `rollback` publishes the
previous recorded release again when the migration rules allow it (else it refuses and says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from autopilot_sync.bindings.module import Module
from autopilot_sync.ops.drift import compare
from autopilot_sync.ops.host_publish import ModuleArtifact, PublishAnswer, publish_module
from autopilot_sync.ops.ledger import Action, Entry, Ledger, now_text
from autopilot_sync.settings.ops import Environment, Target
from autopilot_sync.spacetime.moduledef import schema_hash
from autopilot_sync.spacetime.moduledef.diff import SchemaDiff

SMOKE_TIMEOUT_SECONDS = 15.0


class LaneError(RuntimeError):
    """The lane cannot go on (host unreachable, nothing to roll back to, wrong release to promote); exit 1."""


def release_tag(version: str, hash_hex: str) -> str:
    """Deterministic: `v<version>-<12 hex of the schema hash>` (a changed schema can never reuse a tag)."""
    return f"v{version}-{hash_hex[:12]}"


def source_revision(root: Path | None = None) -> str:
    """`git describe`-like evidence of which code the release came from (`unknown` outside git)."""
    cwd = str(root or Path.cwd())
    try:
        head = subprocess.run(["git", "-C", cwd, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
        dirty = subprocess.run(
            ["git", "-C", cwd, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True, slots=True)
class Release:
    """What a module would be deployed as: its name, how the host gets it (the dotted path it imports, or the
    JavaScript bundle uploaded with the publish; `path` is then the file it was read from), its schema."""

    module: str
    version: str
    schema: dict[str, Any]
    schema_hash: str
    tag: str
    path: str = "autopilot_sync.module"
    bundle: bytes | None = None

    @classmethod
    def of(cls, module: Module, path: str = "autopilot_sync.module") -> Release:
        """The release of a loaded module, installed on the hosts under `path`."""
        schema = module.schema_json()
        digest = schema_hash(schema)
        return cls(module.name, module.version, schema, digest, release_tag(module.version, digest), path)

    @classmethod
    def of_bundle(cls, path: Path, bundle: bytes, schema: dict[str, Any]) -> Release:
        """The release of a built TypeScript module: `schema` is what the bundle describes (`describe_bundle`)."""
        version = f"js-{hashlib.sha256(bundle).hexdigest()[:8]}"
        digest = schema_hash(schema)
        return cls(path.stem, version, schema, digest, release_tag(version, digest), str(path), bundle)

    @property
    def bundle_sha256(self) -> str | None:
        """The bundle's content hash (what the ledger keeps it under), for a TypeScript release."""
        return None if self.bundle is None else hashlib.sha256(self.bundle).hexdigest()

    def artifact(self) -> ModuleArtifact:
        """What the publish route is sent."""
        if self.bundle is not None:
            return ModuleArtifact(bundle=self.bundle)
        return ModuleArtifact(python_module=self.path)


def describe_bundle(path: Path) -> dict[str, Any]:
    """The `RawModuleDefV9` JSON a built TypeScript module describes, loaded as the host loads it (a Node runner).

    Raises `LaneError` when the file cannot be read or the module does not load.
    """
    from autopilot_sync.host.js_module import JsModule
    from autopilot_sync.jsmodule import JsModuleError
    from autopilot_sync.spacetime import moduledef

    if not path.is_file():
        raise LaneError(f"module file {str(path)!r} does not exist")
    try:
        module = JsModule(path)
    except (JsModuleError, OSError) as exc:
        raise LaneError(str(exc)) from None
    try:
        return moduledef.v9.to_json(module.definition())
    finally:
        module.close()


@dataclass(frozen=True, slots=True)
class SmokeStep:
    """One check of the post-publish verification."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class SmokeReport:
    """Every step, in order; verification passes only if all passed."""

    steps: tuple[SmokeStep, ...]

    @property
    def ok(self) -> bool:
        """All steps passed (an empty report never passes)."""
        return bool(self.steps) and all(step.ok for step in self.steps)


class HostApi(Protocol):
    """What the lane asks of a target: its served schema, a publish, and a smoke check (`LiveHost`)."""

    async def schema(self) -> dict[str, Any]:
        """The `RawModuleDefV9` JSON the host serves (LaneError when unreachable)."""
        ...

    async def publish(self, artifact: ModuleArtifact, *, clear: bool, break_clients: bool = False) -> PublishAnswer:
        """Publish an installed Python module or a bundle to the target's database (LaneError when unreachable)."""
        ...

    async def smoke(self) -> tuple[SmokeStep, ...]:
        """Token, connection, subscription and a reducer call against the host."""
        ...

    async def name_issuer(self) -> str:
        """Name the environment's control as the sync module's trusted issuer, as the owner; the issuer named
        (LaneError when the host refuses)."""
        ...


class LiveHost:
    """`HostApi` over the network: the HTTP schema route, control's token route, and the client SDK."""

    def __init__(self, target: Target, timeout: float = SMOKE_TIMEOUT_SECONDS) -> None:
        self.target = target
        self.timeout = timeout

    async def schema(self) -> dict[str, Any]:
        """`GET /v1/database/:name/schema?version=9` without a token (the host answers anonymous readers)."""
        url = f"{self.target.base_url}/v1/database/{self.target.database}/schema"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http,
                http.get(url, params={"version": "9"}) as response,
            ):
                text = await response.text()
                if response.status != 200:
                    raise LaneError(f"{url} answered {response.status}: {text[:200]}")
                value = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LaneError(f"cannot read the schema from {url}: {exc or type(exc).__name__}") from None
        if not isinstance(value, dict):
            raise LaneError(f"{url} did not answer a JSON object")
        return value

    async def _token(self) -> str:
        """A session token control grants the environment's key (LaneError when it does not)."""
        from autopilot_sync.control.client import TokenFetchError, fetch_session_token
        from autopilot_sync.nostr.keyfile import load_secret_key

        try:
            key = load_secret_key(self.target.nostr_key_path)
            grant = await fetch_session_token(self.target.control_url, key, ["sync.subscribe"], [], None, "cli")
        except (OSError, ValueError, TokenFetchError) as exc:
            raise LaneError(f"no session token from {self.target.control_url}: {exc}") from None
        return grant.token

    async def publish(self, artifact: ModuleArtifact, *, clear: bool, break_clients: bool = False) -> PublishAnswer:
        """`PUT /v1/database/:name` with the module (its dotted path, or the bundle), as the environment's key."""
        token = await self._token()
        try:
            return await publish_module(
                self.target.base_url,
                self.target.database,
                token,
                artifact,
                clear=clear,
                break_clients=break_clients,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LaneError(f"cannot publish to {self.target.base_url}: {exc or type(exc).__name__}") from None

    async def name_issuer(self) -> str:
        """`set_trusted_issuer` with the issuer control signs into the environment key's tokens (`iss`)."""
        from autopilot_sync.control.client import TokenFetchError, fetch_session_token
        from autopilot_sync.devtools.trust import call_set_trusted_issuer
        from autopilot_sync.nostr.keyfile import load_secret_key

        try:
            key = load_secret_key(self.target.nostr_key_path)
            grant = await fetch_session_token(self.target.control_url, key, ["sync.subscribe"], [], None, "cli")
            if not grant.issuer:
                raise ValueError(f"{self.target.control_url} names no issuer in its token answer")
            await call_set_trusted_issuer(self.target.base_url, self.target.database, grant.token, grant.issuer)
        except (OSError, ValueError, TokenFetchError, RuntimeError, aiohttp.ClientError) as exc:
            raise LaneError(f"cannot name the trusted issuer on {self.target.base_url}: {exc}") from None
        return grant.issuer

    async def smoke(self) -> tuple[SmokeStep, ...]:
        """Run the smoke steps; the first failure ends it (later steps depend on earlier ones)."""
        from autopilot_sync.client import ReducerCommitted, connect
        from autopilot_sync.control.client import TokenFetchError, fetch_session_token
        from autopilot_sync.nostr.keyfile import load_secret_key

        steps: list[SmokeStep] = []
        try:
            key = load_secret_key(self.target.nostr_key_path)
            grant = await fetch_session_token(self.target.control_url, key, ["sync.subscribe"], [], None, "cli")
        except (OSError, ValueError, TokenFetchError) as exc:
            return (SmokeStep("token", False, f"no session token from {self.target.control_url}: {exc}"),)
        steps.append(
            SmokeStep(
                "token", True, f"session token for {grant.npub}, expires in {int(grant.expires_at - time.time())}s"
            )
        )
        try:
            connection = await asyncio.wait_for(
                connect(self.target.base_url, self.target.database, token=grant.token), self.timeout
            )
        except Exception as exc:  # any failure to connect is a failed step, reported with its type
            steps.append(SmokeStep("connect", False, f"{type(exc).__name__}: {exc}"))
            return tuple(steps)
        steps.append(SmokeStep("connect", True, f"connected with {connection.protocol}"))
        try:
            query_set = await connection.subscribe(["SELECT * FROM stream_head", "SELECT * FROM active_connection"])
            await asyncio.wait_for(query_set.applied(), self.timeout)
            mine = [row for row in connection.cache.rows("active_connection") if row.npub == grant.npub]
            steps.append(
                SmokeStep(
                    "subscribe",
                    bool(mine),
                    f"stream_head rows={connection.cache.count('stream_head')}, "
                    f"active_connection rows={connection.cache.count('active_connection')}, "
                    + ("own connection present in presence" if mine else "own connection MISSING from presence"),
                )
            )
            result = await asyncio.wait_for(connection.call("heartbeat"), self.timeout)
            committed = isinstance(result, ReducerCommitted)
            steps.append(SmokeStep("heartbeat", committed, "committed" if committed else repr(result)))
        except Exception as exc:  # a broken subscription or call fails the step; the report says how
            steps.append(SmokeStep("subscribe+heartbeat", False, f"{type(exc).__name__}: {exc}"))
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
        return tuple(steps)


@dataclass
class Outcome:
    """What a lane command did: lines for the operator, and the exit status."""

    lines: list[str] = field(default_factory=list)
    status: int = 0

    def say(self, line: str) -> None:
        """Add one line of output."""
        self.lines.append(line)

    def fail(self, line: str) -> Outcome:
        """Add a line and make the exit status 1."""
        self.lines.append(line)
        self.status = 1
        return self


class Lane:
    """One environment's lane: its target, its ledger and the live host."""

    def __init__(
        self,
        target: Target,
        host: HostApi | None = None,
        *,
        revision: str | None = None,
    ) -> None:
        self.target = target
        self.host: HostApi = host or LiveHost(target)
        self.ledger = Ledger(target.env_state_dir)
        self.revision = revision

    @property
    def env(self) -> Environment:
        """The environment this lane acts on."""
        return self.target.env

    async def diff(self, release: Release) -> SchemaDiff:
        """Drift from what the host serves now to `release`."""
        return compare(await self.host.schema(), release.schema)

    async def publish(
        self,
        release: Release,
        *,
        delete_data: bool = False,
        break_clients: bool = False,
        promoted_from: Environment | None = None,
    ) -> Outcome:
        """Check drift, record the release, publish it to the host and verify it: GO or NO-GO."""
        out = Outcome()
        action = Action.PROMOTE if promoted_from else Action.PUBLISH
        out.say(f"{action.value} {release.module} {release.tag} to {self.env.value} ({self.target.base_url})")
        drift = await self.diff(release)
        out.say(drift.render())
        if drift.breaking and not delete_data:
            return out.fail(
                f"REFUSED: {len(drift.breaking)} breaking change(s); the host keeps data only through automatic "
                "migrations. Re-run with --delete-data only if this environment's data may be deleted "
                "(docs/runbooks/deployment.md)."
            )
        current = self.ledger.current()
        if drift.identical and current is not None and current.tag == release.tag and self.ledger.verified(release.tag):
            out.say(f"{release.tag} is already the verified release of {self.env.value}; nothing recorded")
            return out
        self.ledger.save_schema(release.tag, release.schema)
        if release.bundle is not None:
            self.ledger.save_bundle(hashlib.sha256(release.bundle).hexdigest(), release.bundle)
        detail: dict[str, Any] = {
            "module": release.module,
            "module_path": release.path,
            "bundle_sha256": release.bundle_sha256,
            "version": release.version,
            "source_revision": self.revision or source_revision(),
            "base_url": self.target.base_url,
            "database": self.target.database,
            "live_schema_hash": drift.base_hash,
            "drift": [change.to_json() for change in drift.changes],
            "delete_data": delete_data,
            "previous": current.tag if current else None,
        }
        if promoted_from:
            detail["from_env"] = promoted_from.value
        self.ledger.append(Entry(action, release.tag, release.schema_hash, now_text(), detail))
        out.say(f"recorded {release.tag} in {self.ledger.path}")
        return await self._deploy_and_verify(
            out, release.tag, release.path, release.artifact(), delete_data, break_clients
        )

    async def promote(
        self, release: Release, source: Ledger, *, delete_data: bool = False, break_clients: bool = False
    ) -> Outcome:
        """Publish here exactly the release that is current and verified in the previous environment."""
        origin = self.env.promoted_from
        if origin is None:
            raise LaneError("dev is the first environment: use `module publish --env dev`")
        current = source.current()
        if current is None:
            raise LaneError(f"{origin.value} has no recorded release to promote")
        if current.tag != release.tag:
            raise LaneError(
                f"{origin.value} runs {current.tag} but this checkout is {release.tag}: promote from the checkout "
                f"of {current.detail.get('source_revision', 'that release')}"
            )
        if source.verified(current.tag) is None:
            raise LaneError(
                f"{current.tag} is not verified in {origin.value}: run `module verify --env {origin.value}`"
            )
        return await self.publish(release, delete_data=delete_data, break_clients=break_clients, promoted_from=origin)

    async def rollback(self, *, delete_data: bool = False, break_clients: bool = False) -> Outcome:
        """Publish the previous recorded release again, when the migration rules allow it; else refuse and say why."""
        out = Outcome()
        current, previous = self.ledger.current(), self.ledger.previous()
        if current is None or previous is None:
            raise LaneError(f"{self.env.value} has no previous release to roll back to (ledger {self.ledger.path})")
        schema = self.ledger.load_schema(previous.tag)
        out.say(f"rollback {self.env.value}: {current.tag} -> {previous.tag}")
        drift = compare(await self.host.schema(), schema)
        out.say(drift.render(head_label=previous.tag))
        if drift.breaking and not delete_data:
            return out.fail(
                f"REFUSED: going back to {previous.tag} is a breaking change for the data the host holds now "
                f"({len(drift.breaking)} breaking change(s) above); roll forward with a fix instead, or re-run with "
                "--delete-data if this environment's data may be deleted."
            )
        module_path = previous.detail.get("module_path")
        if not isinstance(module_path, str):
            raise LaneError(f"{previous.tag} was recorded without its module path: publish it with `module publish`")
        bundle_sha256 = previous.detail.get("bundle_sha256")
        if isinstance(bundle_sha256, str):
            artifact = ModuleArtifact(bundle=self.ledger.load_bundle(bundle_sha256))
        else:
            artifact = ModuleArtifact(python_module=module_path)
        revision = previous.detail.get("source_revision", "unknown")
        detail = {
            "from": current.tag,
            "module_path": module_path,
            "bundle_sha256": bundle_sha256 if isinstance(bundle_sha256, str) else None,
            "source_revision": revision,
            "delete_data": delete_data,
        }
        self.ledger.append(Entry(Action.ROLLBACK, previous.tag, previous.schema_hash, now_text(), detail))
        out.say(f"recorded rollback to {previous.tag} (code at {revision}) in {self.ledger.path}")
        return await self._deploy_and_verify(out, previous.tag, module_path, artifact, delete_data, break_clients)

    async def verify(self, tag: str | None = None) -> Outcome:
        """Check that the host serves the recorded release's schema and passes the smoke check; record it."""
        out = Outcome()
        current = self.ledger.current()
        if current is None:
            raise LaneError(f"{self.env.value} has no recorded release (ledger {self.ledger.path})")
        if tag is not None and tag != current.tag:
            raise LaneError(f"{tag} is not the current release of {self.env.value} ({current.tag})")
        live_hash = schema_hash(await self.host.schema())
        steps = [
            SmokeStep(
                "schema",
                live_hash == current.schema_hash,
                f"host serves {live_hash[:12]}, release {current.tag} has {current.schema_hash[:12]}",
            )
        ]
        if steps[0].ok:
            steps.extend(await self.host.smoke())
        report = SmokeReport(tuple(steps))
        for step in report.steps:
            out.say(f"  {'ok  ' if step.ok else 'FAIL'} {step.name}: {step.detail}")
        detail = {"ok": report.ok, "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in report.steps]}
        self.ledger.append(Entry(Action.VERIFY, current.tag, current.schema_hash, now_text(), detail))
        if report.ok:
            out.say(f"GO: {self.env.value} runs {current.tag}, verified")
            return out
        return out.fail(f"NO-GO: {self.env.value} does not pass verification of {current.tag}")

    async def _deploy_and_verify(
        self,
        out: Outcome,
        tag: str,
        module_path: str,
        artifact: ModuleArtifact,
        delete_data: bool,
        break_clients: bool,
    ) -> Outcome:
        """Publish the release to the running host, then verify: GO, or NO-GO with the host's refusal."""
        answer = await self.host.publish(artifact, clear=delete_data, break_clients=break_clients)
        out.say(f"PUBLISH {tag} ({module_path}) to {self.target.base_url}: {answer.line()}")
        if not answer.ok:
            return out.fail(f"NO-GO: the {self.env.value} host refused {tag}; it still runs what it ran before")
        if delete_data and any(r.get("name") == "set_trusted_issuer" for r in (await self.host.schema())["reducers"]):
            # `init` ran again and seeded no issuer: the sync module refuses every token until its owner names one
            try:
                issuer = await self.host.name_issuer()
            except LaneError as exc:
                return out.fail(f"NO-GO: {exc}; the new incarnation trusts no token issuer")
            out.say(f"TRUST {issuer}: named the sync module's trusted issuer again (the data was deleted)")
        verified = await self.verify(tag)
        out.lines.extend(verified.lines)
        out.status = verified.status
        return out
