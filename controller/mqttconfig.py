"""The ``[mqtt]`` section of the terminal config: the county's broker, TLS, credentials,
and the county link's periods and limits (see docs/mqtt/README.md and
docs/configuration.md).

Secrets are not in the TOML: the password lives in ``password_file`` (owner-only), the
client key in ``key_file``. Both are read when the link starts, never logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from controller.errors import ConfigError
from controller.tomlcheck import _bool, _int_or, _path, _section, _show, _text, _text_or

MQTT_KEYS: Final = (
    "enabled", "host", "port", "tls", "ca_file", "cert_file", "key_file", "username",
    "password_file", "client_id", "keepalive_s", "reconnect_min_s", "reconnect_max_s",
    "metrics_s", "max_command_bytes", "command_max_age_s", "operators",
)  # fmt: skip
MAX_OPERATORS: Final = 200
_HOST_RE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class MqttSettings:
    """The county link's settings; ``enabled`` false means the daemon does not start it."""

    enabled: bool = False
    host: str = ""
    port: int = 8883
    tls: bool = True
    ca_file: Path | None = None  # None: the system's CA certificates
    cert_file: Path | None = None  # client certificate (with key_file)
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    client_id: str = ""
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 120
    metrics_s: int = 60
    max_command_bytes: int = 8192
    command_max_age_s: int = 3600  # the longest expiry a command may carry
    operators: tuple[str, ...] = ()  # empty: any operator the broker lets write commands


def parse_mqtt(extra: Mapping[str, Any], base: Path, kiosk_id: str) -> MqttSettings:
    """``[mqtt]`` as MqttSettings; ConfigError names the key, the value and the fix."""
    m = _section(extra, "mqtt", "", "[mqtt]", MQTT_KEYS)
    enabled = _bool(m, "enabled", "mqtt", False)
    if not enabled:
        return MqttSettings()
    host = _text(m, "host", "mqtt")
    if not _HOST_RE.fullmatch(host):
        raise ConfigError(
            "mqtt.host",
            host,
            f"{_show(host)} is not a host name or address",
            'write the broker\'s name or address, e.g. host = "mqtt.county.example"',
        )
    tls = _bool(m, "tls", "mqtt", True)
    port = _int_or(m, "port", "mqtt", (1, 65535), 8883 if tls else 1883)
    files = {
        name: _path(m, name, "mqtt", base, "") if name in m else None
        for name in ("ca_file", "cert_file", "key_file", "password_file")
    }
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise ConfigError(
            "mqtt.cert_file" if files["cert_file"] is None else "mqtt.key_file",
            None,
            "is missing: a client certificate needs both cert_file and key_file",
            "add both, or neither",
        )
    if not tls and (files["cert_file"] or files["ca_file"]):
        raise ConfigError(
            "mqtt.tls",
            False,
            "is false, but ca_file or cert_file are set",
            "set tls = true (certificates only work over TLS) or remove them",
        )
    username = _name(m, "username", kiosk_id)
    reconnect_min = _int_or(m, "reconnect_min_s", "mqtt", (1, 600), 1)
    reconnect_max = _int_or(m, "reconnect_max_s", "mqtt", (1, 3600), 120)
    if reconnect_max < reconnect_min:
        raise ConfigError(
            "mqtt.reconnect_max_s",
            reconnect_max,
            f"{reconnect_max} is below reconnect_min_s ({reconnect_min})",
            "make reconnect_max_s at least reconnect_min_s",
        )
    return MqttSettings(
        enabled=True,
        host=host,
        port=port,
        tls=tls,
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        username=username,
        password_file=files["password_file"],
        client_id=_name(m, "client_id", kiosk_id),
        keepalive_s=_int_or(m, "keepalive_s", "mqtt", (5, 600), 30),
        reconnect_min_s=reconnect_min,
        reconnect_max_s=reconnect_max,
        metrics_s=_int_or(m, "metrics_s", "mqtt", (10, 3600), 60),
        max_command_bytes=_int_or(m, "max_command_bytes", "mqtt", (512, 262144), 8192),
        command_max_age_s=_int_or(m, "command_max_age_s", "mqtt", (10, 86400), 3600),
        operators=_operators(m),
    )


def _name(m: Mapping[str, Any], key: str, default: str) -> str:
    value = _text_or(m, key, "mqtt", default)
    if not _NAME_RE.fullmatch(value):
        raise ConfigError(
            f"mqtt.{key}",
            value,
            f"{_show(value)} is not a broker account or client name",
            "use 1 to 64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit "
            f'(default: the kiosk_id "{default}")',
        )
    return value


def _operators(m: Mapping[str, Any]) -> tuple[str, ...]:
    raw = m.get("operators", [])
    if not isinstance(raw, list) or len(raw) > MAX_OPERATORS:
        raise ConfigError(
            "mqtt.operators",
            raw,
            f"{_show(raw)} is not a list of at most {MAX_OPERATORS} operator ids",
            'write operators = ["it-mueller", "it-schmidt"], or leave it out to accept any',
        )
    out: list[str] = []
    for i, op in enumerate(raw):
        if not isinstance(op, str) or not _NAME_RE.fullmatch(op) or op in out:
            raise ConfigError(
                f"mqtt.operators[{i}]",
                op,
                f"{_show(op)} is not a new operator id",
                "use 1 to 64 of A-Z a-z 0-9 . _ @ -, each once",
            )
        out.append(op)
    return tuple(out)
