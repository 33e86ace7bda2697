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
    #: ``text`` for people, ``json`` (one object per line) for a log collector.
    log_format: Literal["text", "json"] = "text"
    # -- time-series store over the InfluxDB line protocol, and the store-and-forward spool --
    # -- broker accounts, ACLs and TLS --

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
