"""Configuration: defaults < config file (TOML) < environment (``EWG_*``) < command line.

Settings are only ever built by :func:`load_settings` (never at import time), so
tests and the CLI each make their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.profiles import DEFAULT_PROFILE_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EWG_", extra="forbid")

    #: ``mqtt://host:port``; None means "run the embedded broker" (demo only).
    broker_url: str | None = None
    embedded_broker_port: int = 1883
    mqtt_client_id: str = "ewg-gateway"
    mqtt_qos: int = Field(default=1, ge=0, le=1)
    data_dir: Path = Path("ewg-data")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    #: Admin API token; when unset, one is generated on first start into data_dir/admin.token.
    api_token: SecretStr | None = None
    store: str = "sqlite"
    profiles_dir: Path = DEFAULT_PROFILE_DIR
    timezone: str = "Asia/Shanghai"
    max_payload_bytes: int = 64 * 1024
    max_future_s: int = 86_400
    max_age_s: int = 30 * 86_400
    flush_interval_s: float = 0.05
    offline_sweep_s: float = 5.0
    #: Per-site and per-device rule overrides (YAML, see gateway/rule_overrides.py); None: none.
    rule_overrides: Path | None = None
    #: How often the detectors' learnt state is written to data_dir/detectors.json.
    detector_state_interval_s: float = Field(default=60.0, gt=0)
    #: ``text`` for people, ``json`` (one object per line) for a log collector.
    log_format: Literal["text", "json"] = "text"
    #: Escalation policies, notification channels and their timings (YAML); None: the shipped
    #: default (alerts/default_alerting.yaml), which notifies the gateway log only.
    alerting_config: Path | None = None
    # -- time-series store over the InfluxDB line protocol, and the store-and-forward spool --
    #: Base URL of an InfluxDB v2 write API (``/api/v2/write`` is appended) for
    #: ``store = "influx"``: InfluxDB 2.x/3.x, or VictoriaMetrics (which must run with
    #: ``-dedup.minScrapeInterval=1ms`` so a redelivered reading is kept once).
    influx_url: str = "http://127.0.0.1:8428"
    influx_token: SecretStr | None = None
    influx_org: str = "ewg"
    influx_bucket: str = "ewg"
    #: Prometheus-compatible query API base (``/api/v1/...`` appended); None: influx_url.
    influx_query_url: str | None = None
    #: HTTP timeout of one write or query to the influx store.
    influx_timeout_s: float = Field(default=10.0, gt=0)
    #: A store write that takes longer counts as failed: its batch goes to the spool.
    store_write_timeout_s: float = Field(default=10.0, gt=0)
    #: Longest pause between two tries of a failing store (the spool replay backs off to it).
    store_retry_max_s: float = Field(default=10.0, gt=0)
    #: Bound of the store-and-forward spool (data_dir/spool.db), in encoded bytes. When it is
    #: full the gateway stops acknowledging and the broker holds new messages (nothing lost).
    spool_max_bytes: int = Field(default=1024**3, gt=0)
    # -- broker accounts, ACLs and TLS --
    #: Who manages the devices' MQTT accounts on the broker: "none" (an anonymous broker, the
    #: demo) or "dynsec" (Mosquitto's dynamic-security plugin, driven over MQTT by EWG).
    broker_accounts: Literal["none", "dynsec"] = "none"
    #: The dynsec admin account EWG sends ``$CONTROL/dynamic-security/v1`` commands with; it is
    #: not the gateway's ingest account (that one comes from ``broker_url``'s user:pass).
    broker_admin_username: str | None = None
    broker_admin_password: SecretStr | None = None
    #: How long to wait for the broker to answer an account command before giving up.
    broker_admin_timeout_s: float = Field(default=5.0, gt=0)
    #: The broker as devices reach it (shown in their connection details); by default
    #: ``broker_url`` without its credentials, which is wrong when that is a loopback address.
    device_broker_url: str | None = None
    #: CA certificate(s) (PEM) to verify the broker with ``mqtts://``; default: the system store.
    mqtt_ca_file: Path | None = None
    #: Client certificate and key (PEM), only for brokers that require mutual TLS.
    mqtt_client_cert: Path | None = None
    mqtt_client_key: Path | None = None
    # -- accounts, login sessions and access (gateway.accounts, gateway.sessions) --
    #: A login session ends after this long without a request...
    session_idle_s: float = Field(default=8 * 3600, gt=0)
    #: ...and after this long in any case (a duty shift and a bit).
    session_max_s: float = Field(default=14 * 3600, gt=0)
    #: ``Secure`` flag of the session cookies. None: set it when the request came over https
    #: (also behind a proxy that forwards the scheme); say true behind one that does not.
    cookie_secure: bool | None = None
    #: After this many failed logins in a row for one username or one client address...
    login_max_failures: int = Field(default=5, ge=1)
    #: ...every further try is refused for this long, doubling per failure up to 15 minutes.
    login_backoff_s: float = Field(default=2.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),)
        return sources


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` (from the command line) win, ``None`` values are skipped."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**given)
    if not config_file.is_file():
        from gateway.errors import ConfigError

        raise ConfigError(f"config file {config_file} does not exist")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(env_prefix="EWG_", extra="forbid", toml_file=config_file)

    return FileSettings(**given)
