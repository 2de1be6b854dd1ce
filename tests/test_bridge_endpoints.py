"""parse_endpoint: the four forms, clear refusals, and a property test over any text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_bridge.endpoints import DEFAULT_BAUD, Endpoint, parse_endpoint
from host_bridge.errors import EndpointError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:7000", Endpoint("tcp", host="127.0.0.1", port=7000)),
        ("tcp://localhost:0", Endpoint("tcp", host="localhost", port=0)),
        ("tcp://[::1]:65535", Endpoint("tcp", host="::1", port=65535)),
        ("unix:/run/amtomat/kiosk.sock", Endpoint("unix", path="/run/amtomat/kiosk.sock")),
        ("serial:/dev/ttyUSB0", Endpoint("serial", path="/dev/ttyUSB0", baud=DEFAULT_BAUD)),
        ("serial:/dev/ttyAMA0?baud=9600", Endpoint("serial", path="/dev/ttyAMA0", baud=9600)),
        ("pty:/run/amtomat/kiosk", Endpoint("pty", path="/run/amtomat/kiosk")),
    ],
)
def test_each_form_parses_and_prints_back(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected
    assert parse_endpoint(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no kind given"),
        ("/dev/ttyUSB0", "no kind given"),
        ("udp://1.2.3.4:5", "unknown kind 'udp'"),
        ("tcp:127.0.0.1:7000", "start with tcp://"),
        ("tcp://127.0.0.1", "port is missing"),
        ("tcp://127.0.0.1:", "port is missing"),
        ("tcp://:7000", "host is missing"),
        ("tcp://::1:7000", "needs brackets"),
        ("tcp://h:70000", "port 70000 is outside 0..65535"),
        ("tcp://h:-1", "port '-1' is not a whole number"),
        ("tcp://h:\uff17\uff10", "is not a whole number"),  # fullwidth digits
        ("tcp://a b:1", "cannot have"),
        ("unix:", "path is empty"),
        ("unix:/" + "x" * 120, "at most 107 bytes"),
        ("serial:/dev/ttyS0?baud=fast", "baud 'fast' is not a whole number"),
        ("serial:/dev/ttyS0?baud=10", "baud 10 is outside"),
        ("serial:/dev/ttyS0?parity=N", "unknown option 'parity=N'"),
        ("serial:?baud=9600", "path is empty"),
        ("pty: /tmp/x", "leading or trailing blanks"),
        ("pty:/tmp/\x00x", "NUL"),
    ],
)
def test_bad_endpoints_are_refused_naming_the_text_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(EndpointError) as err:
        parse_endpoint(text)
    assert problem in str(err.value) and repr(text) in str(err.value)
    assert err.value.value == text and "tcp://HOST:PORT" in str(err.value)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(EndpointError, match="must be text"):
        parse_endpoint(7000)  # type: ignore[arg-type]


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_with_an_endpoint_error(text: str) -> None:
    try:
        endpoint = parse_endpoint(text)
    except EndpointError as exc:
        assert exc.value == text
        return
    assert parse_endpoint(str(endpoint)) == endpoint


@given(
    st.one_of(
        st.builds(
            lambda host, port: f"tcp://{host}:{port}",
            st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True),
            st.integers(0, 65535),
        ),
        st.builds(lambda p: f"unix:/{p}", st.from_regex(r"[\w./\-]{1,50}", fullmatch=True)),
        st.builds(
            lambda p, b: f"serial:/{p}?baud={b}",
            st.from_regex(r"[\w./\-]{1,30}", fullmatch=True),
            st.integers(50, 4_000_000),
        ),
        st.builds(lambda p: f"pty:/{p}", st.from_regex(r"[\w./\-]{1,50}", fullmatch=True)),
    )
)
def test_well_formed_endpoints_always_parse_and_round_trip(text: str) -> None:
    endpoint = parse_endpoint(text)
    assert parse_endpoint(str(endpoint)) == endpoint
