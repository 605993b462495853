"""`autopilot-sync client`: tools for the client SDK (today: generating typed bindings)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import click

from autopilot_sync.client.codegen import generate as generate_source
from autopilot_sync.client.codegen_typescript import TypeScriptCodegenError, generate_typescript
from autopilot_sync.client.errors import ClientError
from autopilot_sync.client.schema import fetch_schema_json


@click.group("client")
def client() -> None:
    """Client SDK tools.

    \b
    Example:
      autopilot-sync client generate --base-url http://127.0.0.1:3000 --database chat --out chat_bindings.py
    """


async def _download(base_url: str, database: str, token: str | None) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        return await fetch_schema_json(session, base_url, database, token)


@client.command("generate")
@click.option("--base-url", help="Host to fetch the schema from (e.g. http://127.0.0.1:3000).")
@click.option("--database", help="Database name (with --base-url).")
@click.option("--token", envvar="AUTOPILOT_SYNC_CLIENT_TOKEN", help="Bearer token for the schema route (optional).")
@click.option(
    "--schema-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read RawModuleDefV9 or RawModuleDefV10 JSON from a file instead of a host.",
)
@click.option(
    "--lang",
    type=click.Choice(["python", "typescript", "javascript"]),
    default="python",
    show_default=True,
    help="python: one module for this SDK; typescript: a module_bindings folder for the official SpacetimeDB "
    "TypeScript SDK, as `spacetime generate --lang typescript` writes it; javascript: the same folder as .mjs files "
    "that Node runs without a compiler.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="File to write (python), or folder to write (typescript, javascript).",
)
def generate(
    base_url: str | None, database: str | None, token: str | None, schema_file: Path | None, lang: str, out_path: Path
) -> None:
    """Write typed bindings (python: a dataclass per table, a typed method per reducer) for a module.

    \b
    Example:
      autopilot-sync client generate --base-url http://127.0.0.1:3000 --database chat --out chat_bindings.py
      autopilot-sync client generate --schema-file chat.schema.json --out chat_bindings.py
      autopilot-sync client generate --lang typescript --schema-file chat.schema.json --out src/module_bindings
    """
    if schema_file is not None:
        document = json.loads(schema_file.read_text(encoding="utf-8"))
        source = schema_file.name
    elif base_url and database:
        try:
            document = asyncio.run(_download(base_url, database, token))
        except ClientError as exc:
            raise click.ClickException(str(exc)) from exc
        source = f"{base_url.rstrip('/')}/v1/database/{database}/schema?version=9"
    else:
        raise click.UsageError("give --schema-file, or --base-url with --database")
    if lang != "python":
        try:
            files = generate_typescript(document, source, "typescript" if lang == "typescript" else "javascript")
        except TypeScriptCodegenError as exc:
            raise click.ClickException(str(exc)) from exc
        out_path.mkdir(parents=True, exist_ok=True)
        for name, body in files.items():
            (out_path / name).write_text(body, encoding="utf-8")
        click.echo(f"wrote {len(files)} files to {out_path}")
        return
    try:
        text = generate_source(document, source)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    out_path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out_path}")
