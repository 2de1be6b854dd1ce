"""The bridge's endpoints: ``controller.endpoints`` with its errors raised as EndpointError.

The bridge listens on one machine's address (port 0 asks the system for a free port, for
tests and the demo); a kiosk client connects by address or host name.
"""

from __future__ import annotations

from controller import endpoints
from controller.endpoints import Endpoint as Endpoint
from controller.errors import ConfigError
from host_bridge.errors import EndpointError


def parse_endpoint(text: str, *, connect: bool = False) -> Endpoint:
    """An endpoint to listen on, or with ``connect`` one to connect to (HOST may be a host
    name, PORT is not 0); EndpointError naming ``text``, the problem and the fix."""
    try:
        return endpoints.parse_endpoint(text, free_port=not connect, host_names=connect)
    except ConfigError as exc:
        raise EndpointError(f"endpoint {text!r}: {exc.problem}; {exc.fix}", text) from None
