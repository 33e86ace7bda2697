"""The ``ewg`` command line (typer). Names here are a stable interface: scripts use them."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import signal
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gateway import cli_detectors, cli_enterprise, cli_users
from gateway.config import Settings, load_settings
from gateway.errors import EwgError
from gateway.registry_model import Device, Site

if TYPE_CHECKING:
    from gateway.broker_accounts import DeviceAccounts
    from gateway.connection_sheet import ConnectionSheet
    from gateway.service import Gateway

app = typer.Typer(
    help="EWG early-warning gateway", no_args_is_help=True, pretty_exceptions_enable=False
)
site_app = typer.Typer(help="Register and list sites", no_args_is_help=True)
device_app = typer.Typer(help="Register and list devices", no_args_is_help=True)
token_app = typer.Typer(help="API access tokens", no_args_is_help=True)
profiles_app = typer.Typer(help="Device profiles", no_args_is_help=True)
app.add_typer(site_app, name="site")
app.add_typer(device_app, name="device")
app.add_typer(token_app, name="token")
app.add_typer(profiles_app, name="profiles")

T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where EWG keeps its data")]
BrokerOpt = Annotated[str | None, typer.Option("--broker", help="mqtt://host:port")]
HttpOpt = Annotated[str | None, typer.Option("--http", help="HTTP listen address host:port")]


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except EwgError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def _split_http(http: str | None) -> dict[str, object]:
    if http is None:
        return {}
    host, _, port = http.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter(f"--http {http!r} must be host:port", param_hint="--http")
    return {"http_host": host, "http_port": int(port)}


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except EwgError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def log_handler(log_format: str) -> logging.Handler:
    """Text logs for people; ``json`` gives one JSON object per line for a log collector
    (journald, Loki, ELK)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def _logging(verbose: bool = False, log_format: str = "text") -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, handlers=[log_handler(log_format)], force=True)
    for noisy in ("amqtt", "transitions", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _serve_http(
    settings: Settings,
    gateway: Gateway,
    until: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Serve the API until SIGINT/SIGTERM (or ``until`` returns), then let the caller's
    ``async with Gateway`` shut everything down in order."""
    import uvicorn

    from gateway.app import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # signals are ours: uvicorn would re-raise them after its own shutdown

    server = Server(
        uvicorn.Config(
            create_app(settings, gateway),
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            lifespan="on",
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve())
    others: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if until is not None:
        others.append(asyncio.create_task(until()))
    await asyncio.wait({serving, *others}, return_when=asyncio.FIRST_COMPLETED)
    typer.echo("stopping ...")
    server.should_exit = True
    for task in others:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await serving


@app.command()
def serve(
    broker: BrokerOpt = None,
    data_dir: DataDirOpt = None,
    http: HttpOpt = None,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the gateway: MQTT ingestion, detectors, alerts, API and console."""
    from gateway.service import Gateway

    settings = _settings(config, broker_url=broker, data_dir=data_dir, **_split_http(http))
    _logging(verbose, settings.log_format)
    if settings.broker_url is None:
        typer.secho(
            "no --broker given: running the embedded broker (fine for a demo only)",
            fg=typer.colors.YELLOW,
            err=True,
        )

    async def main() -> None:
        async with Gateway(settings) as gateway:
            _announce(settings, gateway.broker_url, None)
            await _serve_http(settings, gateway)

    _run(main())


def _announce(settings: Settings, broker_url: str, token: str | None) -> None:
    """What to open. ``token`` is shown only by the demo: a served gateway's output ends up in
    logs (journald), so there it only says where the token is. The console link is the login
    page, never with a token in it: people sign in with an account (the demo prints them),
    and a URL ends up in browser history and access logs."""
    from gateway.mqtt import without_credentials

    broker_url = without_credentials(broker_url)
    url = f"http://{settings.http_host}:{settings.http_port}/"
    typer.secho(f"EWG console: {url}login.html", fg=typer.colors.GREEN)
    typer.echo(f"API docs:    {url}docs")
    typer.echo(f"MQTT broker: {broker_url}")
    if token:
        typer.echo(f"admin token: {token}")
    elif settings.api_token is not None:
        typer.echo("admin token: as configured (EWG_API_TOKEN)")
    else:
        typer.echo(f"admin token: in {settings.data_dir / 'admin.token'}")


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


@app.command()
def demo(
    broker: BrokerOpt = None,
    data_dir: DataDirOpt = None,
    http: HttpOpt = None,
    scenario: Annotated[Path | None, typer.Option(help="scenario YAML")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after S seconds")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """The demo: embedded broker, gateway, console and a simulated town, in one process."""
    from gateway.service import Gateway
    from simulator.runner import Simulator
    from simulator.scenario import load_scenario, registrations
    from simulator.town import small_town

    directory = data_dir or Path(tempfile.mkdtemp(prefix="ewg-demo-"))
    settings = _settings(
        None,
        broker_url=broker,
        data_dir=directory,
        embedded_broker_port=_free_port(1883),
        **_split_http(http),
    )
    _logging(verbose, settings.log_format)
    town = load_scenario(scenario) if scenario else small_town()

    async def main() -> None:
        async with Gateway(settings) as gateway:
            sites, devices = registrations(town)
            for site in sites:
                if gateway.registry.find_site(site.id) is None:
                    await gateway.registry.add_site(site, "demo")
            known = {d.id for d in gateway.registry.devices()}
            for device in devices:
                if device.id not in known:
                    await gateway.registry.add_device(device, "demo")
            configured = settings.api_token.get_secret_value() if settings.api_token else None
            _announce(settings, gateway.broker_url, gateway.admin_token or configured)
            cli_users.echo_demo_accounts(await cli_users.demo_accounts(gateway.users, sites))
            typer.echo(f"simulating {len(sites)} sites, {len(devices)} devices; Ctrl-C stops")
            stop = threading.Event()
            sim = Simulator(town, gateway.broker_url, truth_path=directory / "truth.jsonl")

            async def until() -> None:
                runner = asyncio.create_task(asyncio.to_thread(sim.run, stop))
                try:
                    if duration is not None:
                        await asyncio.sleep(duration)
                    else:
                        await asyncio.Event().wait()
                finally:
                    stop.set()
                    await runner

            await _serve_http(settings, gateway, until)

    _run(main())


@app.command()
def simulate(
    broker: Annotated[str, typer.Option(help="mqtt://host:port")],
    scenario: Annotated[Path, typer.Option(help="scenario YAML")],
    truth: Annotated[Path | None, typer.Option(help="write ground truth JSONL here")] = None,
    duration: Annotated[
        float | None, typer.Option(help="seconds (default: the scenario's)")
    ] = None,
    qos: Annotated[int, typer.Option(min=0, max=1)] = 1,
) -> None:
    """Run the simulator on its own against any broker."""
    from simulator.runner import simulate as run_simulation

    _logging()
    report = run_simulation(broker, scenario, truth, duration, qos)
    typer.echo(report.summary() if hasattr(report, "summary") else str(report))


# -- registry ----------------------------------------------------------------------------


async def _with_registry(settings: Settings, fn: Callable[..., Awaitable[T]]) -> T:
    from gateway.profiles import load_profiles
    from gateway.registry import Registry
    from gateway.service import open_main_db

    async with open_main_db(settings) as db:
        registry = Registry(db, load_profiles(settings.profiles_dir))
        await registry.refresh()
        return await fn(registry)


@site_app.command("add")
def site_add(
    site_id: str,
    name: Annotated[str, typer.Option(help="name shown to duty staff")],
    village: Annotated[str, typer.Option(help="village/community (村/社区)")],
    industry: Annotated[str, typer.Option(help="e.g. small_shop, dust_factory")],
    address: str = "",
    enterprise: str = "",
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Register a site."""
    settings = _settings(config, data_dir=data_dir)
    site = Site(site_id, name, village, industry, address, enterprise)
    _run(_with_registry(settings, lambda r: r.add_site(site, "cli")))
    typer.echo(f"site {site_id} added")


@site_app.command("list")
def site_list(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """List sites."""
    settings = _settings(config, data_dir=data_dir)

    async def sites(registry: object) -> list[Site]:
        return registry.sites()  # type: ignore[attr-defined, no-any-return]

    for s in _run(_with_registry(settings, sites)):
        typer.echo(f"{s.id}\t{s.village}\t{s.industry}\t{s.name}\t{s.address}")


async def _with_accounts(settings: Settings, fn: Callable[[DeviceAccounts], Awaitable[T]]) -> T:
    """The registry plus the broker's accounts, as the gateway would use them."""
    from gateway.broker_accounts import device_accounts

    async def with_registry(registry: Any) -> T:
        return await fn(device_accounts(settings, registry))

    return await _with_registry(settings, with_registry)


def _cli_actor() -> str:
    """Who to write into the audit log: the operating-system user at the terminal."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _echo_sheet(sheet: ConnectionSheet) -> None:
    """The device's connection sheet (``gateway/connection_sheet.py``), as the portal shows it."""
    if sheet.secret is not None:
        typer.secho(
            "MQTT connection details; the secret is shown only now (EWG keeps only a hash of it):",
            fg=typer.colors.YELLOW,
        )
    else:
        typer.secho("MQTT connection details:", fg=typer.colors.YELLOW)
    for line in sheet.lines():
        typer.echo(line)


async def _added_sheet(accounts: DeviceAccounts, device: Device) -> ConnectionSheet:
    from gateway.connection_sheet import sheet_for

    enrolment = await accounts.add(device, _cli_actor())
    return sheet_for(accounts, enrolment.device, enrolment.credentials)


async def _rotated_sheet(accounts: DeviceAccounts, device_id: str) -> ConnectionSheet:
    from gateway.connection_sheet import sheet_for

    credentials = await accounts.rotate(device_id, _cli_actor())
    return sheet_for(accounts, await accounts.registry.get_device(device_id), credentials)


@device_app.command("add")
def device_add(
    device_id: str,
    profile: Annotated[str, typer.Option(help="device profile name (ewg profiles list)")],
    site: Annotated[str, typer.Option(help="site id")],
    name: str = "",
    parent: Annotated[str | None, typer.Option(help="parent device id")] = None,
    room: Annotated[str | None, typer.Option(help="room / space, for cross-sensor checks")] = None,
    circuit: Annotated[str | None, typer.Option(help="electrical circuit it is on")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Register a device so the gateway accepts its messages (and, with broker accounts on,
    give it its own MQTT secret, printed once)."""
    settings = _settings(config, data_dir=data_dir)
    device = Device(device_id, profile, site, name, parent, room, circuit)
    sheet = _run(_with_accounts(settings, lambda a: _added_sheet(a, device)))
    typer.echo(f"device {device_id} added; it publishes to ewg/v1/{device_id}/telemetry")
    _echo_sheet(sheet)


@device_app.command("rotate-secret")
def device_rotate_secret(
    device_id: str, data_dir: DataDirOpt = None, config: ConfigOpt = None
) -> None:
    """Give a device a new MQTT secret (printed once); the old one stops working at once."""
    settings = _settings(config, data_dir=data_dir)
    sheet = _run(_with_accounts(settings, lambda a: _rotated_sheet(a, device_id)))
    typer.echo(f"device {device_id} has a new secret; the old one no longer connects")
    _echo_sheet(sheet)


@device_app.command("revoke")
def device_revoke(device_id: str, data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Cut a device off for good: its broker account is deleted (a connected device is
    disconnected) and the gateway ignores its messages. Run again to retry the broker."""
    settings = _settings(config, data_dir=data_dir)
    _run(_with_accounts(settings, lambda a: a.revoke(device_id, _cli_actor())))
    if settings.broker_accounts == "none":
        typer.echo(f"device {device_id} revoked; the gateway ignores its messages")
    else:
        typer.echo(f"device {device_id} revoked; the broker has cut it off")


@device_app.command("list")
def device_list(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """List devices."""
    settings = _settings(config, data_dir=data_dir)

    async def devices(registry: object) -> list[Device]:
        return registry.devices()  # type: ignore[attr-defined, no-any-return]

    for d in _run(_with_registry(settings, devices)):
        typer.echo(f"{d.id}\t{d.profile}\t{d.site_id}\t{d.name}")


@token_app.command("create")
def token_create(
    name: str,
    role: cli_users.RoleOpt = cli_users.ADMIN,
    village: cli_users.VillageOpt = None,
    enterprise: cli_users.EnterpriseOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API token (shown once; only its hash is kept), for a role and its scope."""
    from gateway.auth import TokenStore
    from gateway.service import open_main_db

    settings = _settings(config, data_dir=data_dir)

    async def create() -> str:
        async with open_main_db(settings) as db:
            tokens = TokenStore(db)
            return await tokens.create(
                name, role, villages=village or [], enterprise=enterprise, actor="cli"
            )

    try:
        typer.echo(_run(create()))
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


@profiles_app.command("list")
def profiles_list(directory: Annotated[Path | None, typer.Option("--dir")] = None) -> None:
    """List the device profiles."""
    from gateway.profiles import DEFAULT_PROFILE_DIR, load_profiles

    try:
        profiles = load_profiles(directory or DEFAULT_PROFILE_DIR)
    except EwgError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    for p in profiles.values():
        typer.echo(
            f"{p.name}\t{p.title_zh} / {p.title_en}\t{len(p.metrics)} metrics\t{len(p.rules)} rules"
        )


cli_detectors.register(app)  # ewg backtest, ewg evaluate
cli_enterprise.register(app, device_app)  # ewg enterprise ..., ewg device relate
cli_users.register(app)  # ewg user add/list/passwd/disable/enable


def main() -> None:
    app()
