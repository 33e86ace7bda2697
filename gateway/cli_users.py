"""``ewg user add/list/passwd/disable/enable``, and the accounts ``ewg demo`` creates.

Kept apart from :mod:`gateway.cli` (which registers these commands). Passwords are
asked for without echo (twice), or generated with ``--generate`` and printed once;
they are never taken as a command-line value, which would sit in the shell history
and in ``ps``. Every change is audited with the operating-system user as the actor.
"""

from __future__ import annotations

import asyncio
import getpass
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from gateway.errors import EwgError
from gateway.scope import Role

if TYPE_CHECKING:
    from gateway.accounts import UserStore
    from gateway.registry_model import Site

T = TypeVar("T")

#: The default role of ``ewg token create`` (a token made before roles existed is an admin's).
ADMIN = Role.ADMIN

user_app = typer.Typer(help="People who log in to the console (roles and scopes)")

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where EWG keeps its data")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file")]
RoleOpt = Annotated[Role, typer.Option("--role", help="admin, duty, community or enterprise")]
VillageOpt = Annotated[
    list[str] | None,
    typer.Option("--village", help="a community officer's village (repeat for several)"),
]
EnterpriseOpt = Annotated[
    str | None, typer.Option("--enterprise", help="an enterprise user's enterprise")
]


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


def _with_users(
    data_dir: Path | None, config: Path | None, fn: Callable[[UserStore], Awaitable[T]]
) -> T:
    from gateway.accounts import UserStore
    from gateway.config import load_settings
    from gateway.service import open_main_db

    async def run() -> T:
        settings = load_settings(config, data_dir=data_dir)
        async with open_main_db(settings) as db:
            return await fn(UserStore(db))

    try:
        return asyncio.run(run())
    except (EwgError, ValueError) as exc:
        raise _fail(exc) from exc


def new_password() -> str:
    """16 random URL-safe characters (96 bits): shown once, to be changed or kept safe."""
    return secrets.token_urlsafe(12)


def _password(generate: bool) -> tuple[str, bool]:
    if generate:
        return new_password(), True
    password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return password, False


@user_app.command("add")
def user_add(
    username: str,
    role: RoleOpt,
    village: VillageOpt = None,
    enterprise: EnterpriseOpt = None,
    display_name: Annotated[str, typer.Option("--name", help="shown in the console")] = "",
    generate: Annotated[bool, typer.Option(help="generate the password and print it")] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add a user (community officers need --village, enterprise users --enterprise)."""
    password, show = _password(generate)
    _with_users(
        data_dir,
        config,
        lambda users: users.add(
            username,
            password,
            role,
            display_name=display_name,
            villages=village or [],
            enterprise=enterprise,
            actor=_actor(),
        ),
    )
    typer.echo(f"user {username} added ({role.value})")
    if show:
        typer.echo(f"password: {password}")


@user_app.command("list")
def user_list(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Users with role, scope and state (never a password or hash)."""
    for user in _with_users(data_dir, config, lambda users: users.list()):
        scope = ",".join(user.villages or []) or user.enterprise or "town"
        state = "disabled" if user.disabled else "active"
        typer.echo(f"{user.username}\t{user.role.value}\t{scope}\t{state}\t{user.display_name}")


@user_app.command("passwd")
def user_passwd(
    username: str,
    generate: Annotated[bool, typer.Option(help="generate the password and print it")] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a new password; every session of the user ends at once."""
    password, show = _password(generate)
    _with_users(data_dir, config, lambda users: users.set_password(username, password, _actor()))
    typer.echo(f"password of {username} changed; their sessions ended")
    if show:
        typer.echo(f"password: {password}")


@user_app.command("disable")
def user_disable(username: str, data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Disable a user: they cannot log in, and their sessions end at once."""
    _with_users(data_dir, config, lambda users: users.set_disabled(username, True, _actor()))
    typer.echo(f"user {username} disabled; their sessions ended")


@user_app.command("enable")
def user_enable(username: str, data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Let a disabled user log in again."""
    _with_users(data_dir, config, lambda users: users.set_disabled(username, False, _actor()))
    typer.echo(f"user {username} enabled")


def register(app: typer.Typer) -> None:
    """Add ``ewg user ...`` to the ``ewg`` app."""
    app.add_typer(user_app, name="user")


# -- the demo's accounts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoAccount:
    username: str
    password: str
    role: Role
    #: The village or enterprise it is limited to, for the printout.
    scope: str


async def demo_accounts(users: UserStore, sites: list[Site]) -> list[DemoAccount]:
    """One account per role for the demo town, with fresh passwords (printed by the demo).

    The community officer gets the first site's village, the enterprise user the
    first site's enterprise, so both see some of the town and not the rest. An
    account left from an earlier run on the same data directory gets a new password.
    """
    village = sites[0].village if sites else "demo"
    enterprise = next((s.enterprise for s in sites if s.enterprise), "demo")
    wanted = [
        ("admin", Role.ADMIN, "管理员 Admin", [], None, "town"),
        ("duty", Role.DUTY, "值班员 Duty officer", [], None, "town"),
        ("community", Role.COMMUNITY, f"{village}网格员", [village], None, village),
        ("enterprise", Role.ENTERPRISE, f"{enterprise}安全员", [], enterprise, enterprise),
    ]
    out = []
    for username, role, display, villages, firm, scope in wanted:
        password = new_password()
        if await users.get(username) is None:
            await users.add(
                username,
                password,
                role,
                display_name=display,
                villages=villages,
                enterprise=firm,
                actor="demo",
            )
        else:
            await users.set_password(username, password, "demo")
        out.append(DemoAccount(username, password, role, scope))
    return out


def echo_demo_accounts(accounts: list[DemoAccount]) -> None:
    typer.echo("demo accounts (log in at the console; passwords are new each run):")
    for a in accounts:
        typer.echo(f"  {a.role.value:<10} {a.username:<10} {a.password}  ({a.scope})")
