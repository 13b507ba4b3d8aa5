"""``llmagentos keys``: the gateway's API keys (stored hashed; shown once at creation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from llmagentos.cli._common import fail, show_help_without_command, stdout
from llmagentos.exceptions import LLMAgentOSError

__all__ = ["keys_app"]

keys_app = typer.Typer(help="API keys for the gateway: create, list, revoke (admin keys too).")
KeyFile = Annotated[Path, typer.Option("--file", metavar="DB", help="The key file (SQLite).")]


@keys_app.callback(invoke_without_command=True)
def _group(context: typer.Context) -> None:
    show_help_without_command(context)


@keys_app.command("create")
def create(
    tenant: Annotated[
        str | None, typer.Option(help="The tenant the key acts for (not for --admin).")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="service:route patterns the key may call (repeatable), e.g. 'taxi:*'."),
    ] = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="An admin key: it opens the gateway's admin routes (the registry) and no "
            "service; no service key opens them, whatever its scopes.",
        ),
    ] = False,
    file: KeyFile = Path("keys.db"),
) -> None:
    """Create a key and print it once (only its salted hash is stored)."""
    from llmagentos.gateway.auth import ApiKeyStore

    if not admin and (tenant is None or not scope):
        fail("a service key needs --tenant and at least one --scope (or make an --admin key)")
    try:
        store = ApiKeyStore(file)
        key = store.create_key(tenant, scope or (), admin=admin)
        store.close()
    except LLMAgentOSError as err:
        fail(err)
    typer.echo(key)


@keys_app.command("list")
def list_keys(file: KeyFile = Path("keys.db")) -> None:
    """The keys: id, tenant, scopes, revoked (never the secrets)."""
    from llmagentos.gateway.auth import ApiKeyStore

    if not file.is_file():
        fail(f"{file}: no key file")
    store = ApiKeyStore(file)
    table = Table(box=box.SIMPLE_HEAD, title=f"API keys in {file}")
    for column in ("key id", "tenant", "scopes", "revoked"):
        table.add_column(column)
    for info in store.list_keys():
        tenant = "(admin key)" if info.admin else info.tenant
        scopes = "the admin routes" if info.admin else ", ".join(info.scopes)
        table.add_row(info.key_id, tenant, scopes, "yes" if info.revoked else "")
    store.close()
    stdout().print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (from list).")],
    file: KeyFile = Path("keys.db"),
) -> None:
    """Revoke a key: every gateway using the file refuses it from the next request on."""
    from llmagentos.gateway.auth import ApiKeyStore

    if not file.is_file():
        fail(f"{file}: no key file")
    store = ApiKeyStore(file)
    done = store.revoke(key_id)
    store.close()
    if not done:
        fail(f"no key {key_id!r} in {file}")
    typer.echo(f"revoked {key_id}")
