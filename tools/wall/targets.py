"""What the wall connects to, from the command line and the terminal's TOML: the bridge
endpoint and its pairing key, or the MQTT broker and the operator's credentials; and the
terminal's layout (boards, channels, sizes) as a model message. Every problem becomes a
WallSetupError that names the file or value and the fix, never a key or a password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.config import Config, load
from controller.endpoints import Endpoint, local_endpoint
from controller.errors import ControllerError
from controller.keystore import read_key
from county.credentials import read_password
from county.errors import CountyError
from tools.wall.errors import WallSetupError
from tools.wall.mqtt_source import MqttTarget, check_kiosk, parse_host


def load_config(path: Path) -> Config:
    """The terminal's TOML, validated as the daemon does."""
    try:
        return load(path)
    except ControllerError as exc:
        raise WallSetupError(f"--config {path}: {exc}", str(path)) from None
    except OSError as exc:
        raise WallSetupError(
            f"--config {path}: cannot read it ({exc.strerror or exc})", str(path)
        ) from None


def config_layout(cfg: Config) -> dict[str, Any]:
    """The ``config`` model message: boards and compartments in the TOML's order."""
    return {
        "kiosk_id": cfg.terminal.kiosk_id,
        "site": cfg.terminal.site,
        "boards": [{"board": b.board_id} for b in cfg.terminal.boards],
        "compartments": [
            {"compartment": c.label, "board": c.board, "channel": c.channel, "size": c.size}
            for c in cfg.compartments
        ],
    }


def connect_url(listen: tuple[Endpoint, ...]) -> str:
    """The URL of ``controller.endpoints.local_endpoint``; serial and pty endpoints belong
    to the kiosk."""
    found = local_endpoint(listen)
    if found is not None:
        return found.url
    shown = ", ".join(e.url for e in listen) or "nothing"
    raise WallSetupError(
        f"bridge.listen ({shown}) has no tcp:// or unix: endpoint the wall can use (a "
        "serial line or pty belongs to the kiosk); add one such as tcp://127.0.0.1:7010 "
        "to bridge.listen, or give --bridge URL",
        shown,
    )


def bridge_key(cfg: Config | None, key_file: Path | None) -> bytes | None:
    """The pairing key from --key-file or the config's bridge.key_file; None without
    either (a development daemon without a key)."""
    path = key_file if key_file is not None else (cfg.bridge.key_file if cfg else None)
    if path is None:
        return None
    try:
        key = read_key(path)
    except ControllerError as exc:
        hint = ""
        if "cannot read" in str(exc):
            hint = "; run the wall as the daemon's user, e.g. sudo -u amtomat amtomat wall ..."
        raise WallSetupError(f"pairing key {exc}{hint}", str(path)) from None
    if key is None and (key_file is not None or (cfg is not None and cfg.bridge.require_key)):
        raise WallSetupError(
            f"pairing key file {path} does not exist; the daemon writes it at its first "
            "start: start the daemon first, or give --key-file",
            str(path),
        )
    return key


def mqtt_target(
    host: str,
    kiosk: str,
    *,
    username: str | None,
    password_file: Path | None,
    tls: bool,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
) -> MqttTarget:
    """The broker, account and terminal; the password is read from its owner-only file."""
    name, port = parse_host(host, tls)
    check_kiosk(kiosk)
    if (certfile is None) != (keyfile is None):
        raise WallSetupError(
            "--cert and --keyfile go together: give both for a client certificate",
            str(certfile or keyfile),
        )
    if not tls and (cafile or certfile):
        raise WallSetupError(
            "--cafile, --cert and --keyfile are TLS files: leave out --no-tls to use them",
            str(cafile or certfile),
        )
    password = None
    if password_file is not None:
        try:
            password = read_password(password_file)
        except CountyError as exc:
            raise WallSetupError(str(exc).replace("the daemon's user", "you"), exc.value) from None
    return MqttTarget(
        name,
        port,
        kiosk,
        username=username,
        password=password,
        tls=tls,
        cafile=cafile,
        certfile=certfile,
        keyfile=keyfile,
    )
