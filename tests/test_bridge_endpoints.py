"""The bridge's parse_endpoint: the four forms, listening (port 0) and connecting (host
names), clear EndpointError refusals, and property tests over any text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.endpoints import DEFAULT_SERIAL_BAUD
from host_bridge.endpoints import Endpoint, parse_endpoint
from host_bridge.errors import EndpointError

FORMS = "tcp://HOST:PORT"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:7000", Endpoint("tcp", host="127.0.0.1", port=7000)),
        ("tcp://localhost:7000", Endpoint("tcp", host="localhost", port=7000)),
        ("tcp://[::1]:65535", Endpoint("tcp", host="::1", port=65535)),
        ("unix:/run/amtomat/kiosk.sock", Endpoint("unix", path="/run/amtomat/kiosk.sock")),
        ("serial:/dev/ttyUSB0", Endpoint("serial", path="/dev/ttyUSB0", baud=DEFAULT_SERIAL_BAUD)),
        ("serial:/dev/ttyAMA0?baud=9600", Endpoint("serial", path="/dev/ttyAMA0", baud=9600)),
        ("pty:/run/amtomat/kiosk", Endpoint("pty", path="/run/amtomat/kiosk")),
    ],
)
def test_each_form_parses_and_prints_back_for_listening_and_connecting(
    text: str, expected: Endpoint
) -> None:
    for connect in (False, True):
        assert parse_endpoint(text, connect=connect) == expected
        assert parse_endpoint(str(expected), connect=connect) == expected


def test_a_listener_may_ask_for_a_free_port_and_a_client_may_name_a_host() -> None:
    assert parse_endpoint("tcp://localhost:0") == Endpoint("tcp", host="localhost", port=0)
    assert parse_endpoint("tcp://terminal-7.kiosk.lan:7010", connect=True) == Endpoint(
        "tcp", host="terminal-7.kiosk.lan", port=7010
    )
    for text, connect, says in [
        ("tcp://localhost:0", True, "port 0 is out of range; use a port 1..65535"),
        ("tcp://terminal-7.kiosk.lan:7010", False, '"terminal-7.kiosk.lan" is not an IP address;'),
        ("tcp://0.0.0.0:7010", False, "not a single address; listen on 127.0.0.1"),
        ("tcp://0.0.0.0:7010", True, "not a single address; connect to 127.0.0.1"),
    ]:
        with pytest.raises(EndpointError, match=re.escape(says)):
            parse_endpoint(text, connect=connect)


# (text, what the problem says, what the fix says)
BAD = [
    ("", "names no kind", FORMS),
    ("/dev/ttyUSB0", "names no kind", FORMS),
    ("udp://1.2.3.4:5", '"udp" is not a kind (tcp, unix, serial, pty)', FORMS),
    ("tcp:127.0.0.1:7000", "starts with tcp://", FORMS),
    ("tcp://127.0.0.1", "port is missing", FORMS),
    ("tcp://127.0.0.1:", "port is missing", FORMS),
    ("tcp://[::1", "is not closed", FORMS),
    ("tcp://[::1]7000", "write :PORT right after the host", FORMS),
    ("tcp://:7000", "host is missing", FORMS),
    ("tcp://::1:7000", "goes in brackets", FORMS),
    ("tcp://127.0.0.1:70000", "port 70000 is out of range", "use a port 0..65535"),
    ("tcp://h:-1", 'the port "-1" is not 1 to 5 digits', FORMS),
    ("tcp://h:\uff17\uff10", "is not 1 to 5 digits", FORMS),  # fullwidth digits
    ("tcp://a b:1", "a blank or a control character", FORMS),
    ("tcp://kiosk.lan:1", "is not an IP address", "localhost"),
    ("unix:", "path is empty", FORMS),
    ("unix:/" + "x" * 120, "longer than 107 bytes", "use a shorter path"),
    ("serial:/dev/ttyS0?baud=fast", 'unknown option "baud=fast"', "baud=N"),
    ("serial:/dev/ttyS0?baud=10", "baud 10 is out of range", "use 1200..4000000"),
    ("serial:/dev/ttyS0?parity=N", 'unknown option "parity=N"', "baud=N"),
    ("serial:?baud=9600", "path is empty", FORMS),
    ("pty:/tmp/a?b", "holds a ?", FORMS),
    ("pty: /tmp/x", "a blank or a control character", FORMS),
    ("pty:/tmp/\x00x", "a blank or a control character", FORMS),
]


@pytest.mark.parametrize(("text", "problem", "fix"), BAD, ids=[b[0][:30] for b in BAD])
def test_bad_endpoints_are_refused_naming_the_text_the_problem_and_the_fix(
    text: str, problem: str, fix: str
) -> None:
    with pytest.raises(EndpointError) as err:
        parse_endpoint(text)
    message = str(err.value)
    assert message.startswith(f"endpoint {text!r}: ") and problem in message, message
    assert fix in message.partition("; ")[2], message
    assert err.value.value == text


def test_a_non_string_is_refused() -> None:
    with pytest.raises(EndpointError, match="7000 is not text") as err:
        parse_endpoint(7000)  # type: ignore[arg-type]
    assert err.value.value == 7000


@given(st.text(max_size=60), st.booleans())
def test_any_text_parses_or_is_refused_with_an_endpoint_error(text: str, connect: bool) -> None:
    try:
        endpoint = parse_endpoint(text, connect=connect)
    except EndpointError as exc:
        assert exc.value == text
        return
    assert parse_endpoint(str(endpoint), connect=connect) == endpoint


LABEL = r"[a-z0-9]([a-z0-9\-]{0,10}[a-z0-9])?"


@given(
    st.one_of(
        st.builds(
            lambda host, port: f"tcp://{host}:{port}",
            st.from_regex(rf"({LABEL}\.){{0,3}}[a-z]{LABEL}?", fullmatch=True),
            st.integers(1, 65535),
        ),
        st.builds(lambda p: f"unix:/{p}", st.from_regex(r"[A-Za-z0-9_./\-]{1,50}", fullmatch=True)),
        st.builds(
            lambda p, b: f"serial:/{p}?baud={b}",
            st.from_regex(r"[\w./\-]{1,30}", fullmatch=True),
            st.integers(1200, 4_000_000),
        ),
        st.builds(lambda p: f"pty:/{p}", st.from_regex(r"[\w./\-]{1,50}", fullmatch=True)),
    )
)
def test_well_formed_endpoints_always_parse_for_a_client_and_round_trip(text: str) -> None:
    endpoint = parse_endpoint(text, connect=True)
    assert parse_endpoint(str(endpoint), connect=True) == endpoint
