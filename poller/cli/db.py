"""``reward-poller db ...``: the ledger's database schema."""

from __future__ import annotations

import click

from poller.cli.context import Context, handled


@click.group()
def db() -> None:
    """The ledger's database schema."""


@db.command("upgrade")
@click.pass_obj
@handled
def db_upgrade(obj: Context) -> None:
    """Create the ledger or run the Alembic migrations up to the newest, and say whether
    anything changed and between which revisions."""
    from poller.cli.release_cmds import report_upgrade

    config = obj.config()
    report_upgrade(config.ledger.url, config.ledger.schema)
