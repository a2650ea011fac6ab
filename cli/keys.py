"""`inspection keys ...`: API keys with roles (camera, qa, manager), stored hashed and shown once."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import console, settings_from_env
from inspection.progress import console as log_console

keys_app = typer.Typer(help="API keys for cameras, QA engineers and plant managers.", no_args_is_help=True)


@keys_app.command("create")
def keys_create_cmd(
    role: Annotated[str, typer.Option(help="camera (inspect only), qa (feedback, promote) or manager (read-only).")],
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. 'line-2 camera 1'.")],
) -> None:
    """Create a key and print it alone on stdout; it is stored hashed and cannot be shown again."""
    from inspection.storage.api_keys import create_api_key
    from inspection.storage.database import open_database

    key = create_api_key(open_database(settings_from_env().resolved_database_url), role, name)
    log_console.print(f"created a {role} key named {name!r}; store it now, it is not shown again")
    console.print(key, highlight=False, soft_wrap=True)


@keys_app.command("revoke")
def keys_revoke_cmd(name: Annotated[str, typer.Option(help="Name given at creation.")]) -> None:
    """Revoke every active key with this name."""
    from inspection.storage.api_keys import revoke_api_key
    from inspection.storage.database import open_database

    count = revoke_api_key(open_database(settings_from_env().resolved_database_url), name)
    console.print(f"revoked {count} key(s) named {name!r}")
