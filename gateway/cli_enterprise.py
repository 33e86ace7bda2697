"""``ewg enterprise ...`` and ``ewg device relate``: what the production and cross-sensor
detectors read from the registry.

* ``ewg enterprise set ID --name ... --hours 08:00-18:00 --days 1-5`` registers an
  enterprise (the ``--enterprise`` of its sites) or changes it;
* ``ewg enterprise shutdown add ID --start ... --end ... --reason ... --ordered-by ...``
  records an ordered shutdown (停产整顿; ``--holiday`` for a declared non-production
  period), ``shutdown list`` shows them, ``shutdown end`` lifts one early;
* ``ewg device relate DEVICE --room ... --circuit ...`` tags an existing device.

Every change is audited with the operating-system user as the actor. Times given
without an offset are read in the enterprise's own timezone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gateway.registry_model import Enterprise, ShutdownPeriod, check_timezone

if TYPE_CHECKING:
    from gateway.registry import Registry

T = TypeVar("T")

enterprise_app = typer.Typer(
    help="Enterprises: working hours, baselines and ordered shutdowns (停产整顿)",
    no_args_is_help=True,
)
shutdown_app = typer.Typer(
    help="Ordered shutdowns and holidays of an enterprise", no_args_is_help=True
)
enterprise_app.add_typer(shutdown_app, name="shutdown")

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where EWG keeps its data")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file")]


def _registry_call(
    data_dir: Path | None, config: Path | None, fn: Callable[[Registry], Awaitable[T]]
) -> T:
    from gateway import cli

    settings = cli._settings(config, data_dir=data_dir)
    return cli._run(cli._with_registry(settings, fn))


def _actor() -> str:
    from gateway import cli

    return cli._cli_actor()


def parse_local(text: str, timezone: str) -> int:
    """``2026-12-01 08:00`` (in ``timezone``) or ISO 8601 with an offset, as epoch ms.

    >>> parse_local("2026-12-01 00:00", "Asia/Shanghai")
    1796054400000
    >>> parse_local("2026-11-30T16:00:00+00:00", "Asia/Shanghai")
    1796054400000
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a time; use 2026-12-01 08:00 or ISO 8601"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=check_timezone(timezone))
    return int(value.timestamp() * 1000)


def _local(ts_ms: int, timezone: str) -> str:
    local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(check_timezone(timezone))
    return local.strftime("%Y-%m-%d %H:%M")


@enterprise_app.command("set")
def enterprise_set(
    enterprise_id: str,
    name: Annotated[str | None, typer.Option(help="name shown to duty staff")] = None,
    hours: Annotated[str | None, typer.Option(help="working hours, e.g. 08:00-18:00")] = None,
    days: Annotated[str | None, typer.Option(help="working days, ISO weekdays, e.g. 1-5")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone of its days")] = None,
    baseline_day_kwh: Annotated[
        float | None, typer.Option(help="energy of a non-producing day (else learned)")
    ] = None,
    baseline_load_kw: Annotated[
        float | None, typer.Option(help="load when not producing (else learned)")
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Register an enterprise or change it; options left out keep their current value."""

    async def upsert(registry: Registry) -> tuple[Enterprise, bool]:
        old = registry.find_enterprise(enterprise_id) or Enterprise(enterprise_id)
        changed: dict[str, Any] = {
            key: value
            for key, value in (
                ("name", name),
                ("hours", hours),
                ("days", days),
                ("timezone", timezone),
                ("baseline_day_kwh", baseline_day_kwh),
                ("baseline_load_kw", baseline_load_kw),
            )
            if value is not None
        }
        new = Enterprise(**{**_fields(old), **changed})
        stored = await registry.set_enterprise(new, _actor())
        has_site = any(s.enterprise == enterprise_id for s in registry.sites())
        return stored, has_site

    enterprise, has_site = _registry_call(data_dir, config, upsert)
    typer.echo(
        f"enterprise {enterprise.id} set: {enterprise.hours} on days {enterprise.days}"
        f" ({enterprise.timezone})"
    )
    if not has_site:
        typer.secho(
            f"note: no site has --enterprise {enterprise.id} yet; its meters are found through"
            " their sites",
            fg=typer.colors.YELLOW,
        )


def _fields(enterprise: Enterprise) -> dict[str, Any]:
    return {name: getattr(enterprise, name) for name in Enterprise.__dataclass_fields__}


@enterprise_app.command("list")
def enterprise_list(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """List enterprises with their hours and baselines."""

    async def listing(registry: Registry) -> list[Enterprise]:
        return registry.enterprises()

    for e in _registry_call(data_dir, config, listing):
        day = "learned" if e.baseline_day_kwh is None else f"{e.baseline_day_kwh:g} kWh"
        load = "learned" if e.baseline_load_kw is None else f"{e.baseline_load_kw:g} kW"
        typer.echo(
            f"{e.id}\t{e.name}\t{e.hours}\tdays {e.days}\t{e.timezone}\tday {day}\tload {load}"
        )


@shutdown_app.command("add")
def shutdown_add(
    enterprise_id: str,
    start: Annotated[str, typer.Option(help="e.g. '2026-12-01 00:00' (enterprise's zone)")],
    end: Annotated[str, typer.Option(help="e.g. '2026-12-15 00:00'")],
    reason: Annotated[str, typer.Option(help="why it was ordered")] = "",
    ordered_by: Annotated[str, typer.Option(help="authority / document number")] = "",
    holiday: Annotated[
        bool, typer.Option("--holiday", help="a declared holiday, not a shutdown order")
    ] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Record an ordered shutdown (停产整顿) or a holiday of an enterprise."""

    async def add(registry: Registry) -> tuple[ShutdownPeriod, str, int]:
        tz = registry.enterprise(enterprise_id).timezone
        period = ShutdownPeriod(
            id=0,
            enterprise_id=enterprise_id,
            start_ms=parse_local(start, tz),
            end_ms=parse_local(end, tz),
            reason=reason,
            ordered_by=ordered_by,
            kind="holiday" if holiday else "shutdown",
        )
        from gateway.detect import METER_PROFILES

        stored = await registry.add_shutdown(period, _actor())
        sites = {site.id for site in registry.sites() if site.enterprise == enterprise_id}
        meters = sum(d.site_id in sites and d.profile in METER_PROFILES for d in registry.devices())
        return stored, tz, meters

    period, tz, meters = _registry_call(data_dir, config, add)
    typer.echo(
        f"{period.kind} {period.id} of {enterprise_id}: {_local(period.start_ms, tz)}"
        f" to {_local(period.end_ms, tz)} ({tz}); {meters} power meter(s) watched"
    )
    if meters == 0:
        typer.secho(
            "note: no power meter at this enterprise's sites: nothing can detect production",
            fg=typer.colors.YELLOW,
        )


@shutdown_app.command("list")
def shutdown_list(
    enterprise_id: Annotated[str | None, typer.Argument()] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List shutdown orders and holidays (of one enterprise, or all)."""

    async def listing(registry: Registry) -> list[tuple[ShutdownPeriod, str]]:
        if enterprise_id is not None:
            registry.enterprise(enterprise_id)  # unknown -> error, not an empty list
        return [
            (p, registry.enterprise(p.enterprise_id).timezone)
            for p in registry.shutdowns(enterprise_id)
        ]

    for p, tz in _registry_call(data_dir, config, listing):
        typer.echo(
            f"{p.id}\t{p.enterprise_id}\t{p.kind}\t{_local(p.start_ms, tz)}\t"
            f"{_local(p.end_ms, tz)}\t{p.reason}\t{p.ordered_by}\t{p.created_by}"
        )


@shutdown_app.command("end")
def shutdown_end(
    period_id: int,
    at: Annotated[str | None, typer.Option(help="when it ends (default: now)")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Lift a shutdown early (or move its end); the period itself is kept, audited."""
    from gateway.model import now_ms

    async def end(registry: Registry) -> tuple[ShutdownPeriod, str]:
        period = next((p for p in registry.shutdowns() if p.id == period_id), None)
        tz = registry.enterprise(period.enterprise_id).timezone if period else "Asia/Shanghai"
        end_ms = now_ms() if at is None else parse_local(at, tz)
        return await registry.end_shutdown(period_id, end_ms, _actor()), tz

    period, tz = _registry_call(data_dir, config, end)
    typer.echo(
        f"{period.kind} {period.id} of {period.enterprise_id} ends {_local(period.end_ms, tz)}"
    )


def device_relate(
    device_id: str,
    room: Annotated[str | None, typer.Option(help="room / space (same site)")] = None,
    circuit: Annotated[str | None, typer.Option(help="electrical circuit (same site)")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a device's room and circuit tags (left out: unchanged; ``""``: removed); devices
    in one room or on one circuit confirm each other's alerts."""

    async def relate(registry: Registry) -> Any:
        device = await registry.get_device(device_id)
        new_room = device.room if room is None else room
        new_circuit = device.circuit if circuit is None else circuit
        return await registry.set_relations(device_id, new_room, new_circuit, _actor())

    device = _registry_call(data_dir, config, relate)
    typer.echo(f"device {device.id}: room {device.room or '-'}, circuit {device.circuit or '-'}")


def register(app: typer.Typer, device_app: typer.Typer) -> None:
    """Add ``ewg enterprise ...`` and ``ewg device relate`` to the ``ewg`` app."""
    app.add_typer(enterprise_app, name="enterprise")
    device_app.command("relate")(device_relate)
