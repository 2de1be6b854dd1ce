"""tools.sim.endpoints: a virtual board's pty and TCP socket, against pyserial and real sockets.

Waiting is done by polling with generous deadlines; the assertions are about the bytes
that arrive, never about how long they took.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import serial

from tools.sim.endpoints import BoardEndpoint

ALL_BYTES = bytes(range(256))
DEADLINE_S = 20.0
"""How long any wait may take before the test fails (generous; never asserted on)."""


@pytest.fixture
def endpoint() -> Iterator[BoardEndpoint]:
    with BoardEndpoint("b1") as ep:
        yield ep


def pump(ep: BoardEndpoint, done: Callable[[bytes], bool], what: str) -> bytes:
    """Poll the endpoint, collecting what clients sent, until ``done(collected)``."""
    got = bytearray()
    deadline = time.monotonic() + DEADLINE_S
    while not done(bytes(got)):
        assert time.monotonic() < deadline, f"waiting for {what}; got {bytes(got)!r}"
        got += ep.poll(0.05)
    return bytes(got)


def pump_bytes(ep: BoardEndpoint, n: int) -> bytes:
    return pump(ep, lambda got: len(got) >= n, f"{n} bytes")


def wait_for(ep: BoardEndpoint, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"waiting for {what}; stats {ep.stats}"
        ep.poll(0.05)


def read_exactly(port: serial.SerialBase, n: int) -> bytes:
    got = bytearray()
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < n:
        assert time.monotonic() < deadline, f"waiting for {n} bytes; got {bytes(got)!r}"
        got += port.read(n - len(got))
    return bytes(got)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    sock.settimeout(DEADLINE_S)
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk, f"connection closed after {bytes(got)!r}"
        got += chunk
    return bytes(got)


def open_pty(ep: BoardEndpoint) -> serial.Serial:
    return serial.Serial(ep.pty_path, baudrate=115200, timeout=0.05)


def open_socket(ep: BoardEndpoint) -> serial.SerialBase:
    return serial.serial_for_url(ep.url, timeout=0.05)


def connect(ep: BoardEndpoint) -> socket.socket:
    """A plain TCP client, accepted by the endpoint before returning."""
    before = ep.stats["connects"]
    sock = socket.create_connection(("127.0.0.1", ep.port), timeout=DEADLINE_S)
    wait_for(ep, lambda: ep.stats["connects"] > before, "the endpoint to accept")
    return sock


def test_names_and_addresses(endpoint: BoardEndpoint) -> None:
    assert endpoint.name == "b1"
    assert endpoint.pty_path.startswith("/dev/")
    assert os.path.exists(endpoint.pty_path)
    assert endpoint.port > 0
    assert endpoint.url == f"socket://127.0.0.1:{endpoint.port}"
    assert "b1" in repr(endpoint)


def test_pyserial_on_the_pty_passes_every_byte_value_both_ways(endpoint: BoardEndpoint) -> None:
    with open_pty(endpoint) as port:
        port.write(ALL_BYTES * 2)
        port.flush()
        assert pump_bytes(endpoint, 512) == ALL_BYTES * 2
        endpoint.write(ALL_BYTES * 2)
        assert read_exactly(port, 512) == ALL_BYTES * 2
    stats = endpoint.stats
    assert stats["bytes_in"] == 512
    assert stats["bytes_out"] == 512
    assert stats["dropped_out"] == 0


def test_the_pty_is_raw_even_for_a_client_that_sets_nothing(endpoint: BoardEndpoint) -> None:
    """A client that opens the pty without configuring it still sees raw bytes: CR/LF,
    0x03 (Ctrl-C), 0x11/0x13 (XON/XOFF), 0x00 and 0xFF pass unchanged, nothing echoes."""
    fd = os.open(endpoint.pty_path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, ALL_BYTES)
        assert pump_bytes(endpoint, 256) == ALL_BYTES
        endpoint.write(b"\r\n\x03\x11\x13\x00\xff" + ALL_BYTES)
        got = bytearray()
        while len(got) < 263:
            ready, _, _ = select.select([fd], [], [], DEADLINE_S)
            assert ready, f"waiting for the pty; got {bytes(got)!r}"
            got += os.read(fd, 1024)
        assert bytes(got) == b"\r\n\x03\x11\x13\x00\xff" + ALL_BYTES
        # Nothing the client wrote came back to it as echo.
        assert endpoint.poll(0) == b""
    finally:
        os.close(fd)


def test_pyserial_socket_url_passes_every_byte_value_both_ways(endpoint: BoardEndpoint) -> None:
    with open_socket(endpoint) as port:
        wait_for(endpoint, lambda: endpoint.stats["clients"] == 1, "the client")
        port.write(ALL_BYTES)
        assert pump_bytes(endpoint, 256) == ALL_BYTES
        endpoint.write(ALL_BYTES)
        assert read_exactly(port, 256) == ALL_BYTES
    assert endpoint.stats["connects"] == 1


def test_pty_and_tcp_clients_all_hear_the_board_and_all_reach_it(
    endpoint: BoardEndpoint,
) -> None:
    with open_pty(endpoint) as pty_port, open_socket(endpoint) as a, open_socket(endpoint) as b:
        wait_for(endpoint, lambda: endpoint.stats["clients"] == 2, "two clients")
        endpoint.write(b"hello\x00")
        assert read_exactly(pty_port, 6) == b"hello\x00"
        assert read_exactly(a, 6) == b"hello\x00"
        assert read_exactly(b, 6) == b"hello\x00"
        a.write(b"AAAA")
        got = pump_bytes(endpoint, 4)
        b.write(b"BBBB")
        got += pump_bytes(endpoint, 4)
        pty_port.write(b"PPPP")
        got += pump_bytes(endpoint, 4)
        assert got == b"AAAABBBBPPPP"
        # Interleaved senders: everything arrives, each sender's bytes in order.
        a.write(b"a1a2")
        b.write(b"b1b2")
        mixed = pump_bytes(endpoint, 8)
        assert sorted(mixed) == sorted(b"a1a2b1b2")
        assert mixed.replace(b"b1", b"").replace(b"b2", b"") == b"a1a2"
    assert endpoint.stats["connects"] == 2


def test_client_disconnect_and_reconnect(endpoint: BoardEndpoint) -> None:
    first = connect(endpoint)
    first.sendall(b"one")
    assert pump_bytes(endpoint, 3) == b"one"
    first.close()
    wait_for(endpoint, lambda: endpoint.stats["clients"] == 0, "the disconnect")
    assert endpoint.stats["disconnects"] == 1
    endpoint.write(b"nobody")  # no error, no block
    with connect(endpoint) as second:
        endpoint.write(b"two")
        assert recv_exactly(second, 3) == b"two"
        second.sendall(b"back")
        assert pump_bytes(endpoint, 4) == b"back"
    stats = endpoint.stats
    assert stats["connects"] == 2


def test_a_client_that_resets_the_connection_is_removed_on_write(
    endpoint: BoardEndpoint,
) -> None:
    sock = connect(endpoint)
    # SO_LINGER 0: close sends RST, so the next writes to it fail and it is removed.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    deadline = time.monotonic() + DEADLINE_S
    while endpoint.stats["clients"]:
        assert time.monotonic() < deadline
        endpoint.write(b"x")
        endpoint.poll(0.01)
    assert endpoint.stats["disconnects"] == 1


def test_writing_with_nobody_attached_never_blocks_and_counts_drops(
    endpoint: BoardEndpoint,
) -> None:
    chunk = bytes(4096)
    total = 1 << 21

    def flood() -> None:
        for _ in range(total // len(chunk)):
            endpoint.write(chunk)

    # Run in a thread only so that a blocking write would fail the test instead of hanging.
    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    writer.join(60)
    assert not writer.is_alive(), "write() blocked with nobody reading the pty"
    stats = endpoint.stats
    assert stats["bytes_out"] == total
    assert 0 < stats["dropped_out"] < total  # the tty buffer took some, the rest is lost
    # The line still works once a client opens it (pyserial discards the stale bytes).
    with open_pty(endpoint) as port:
        endpoint.write(b"fresh\x00")
        assert read_exactly(port, 6) == b"fresh\x00"
        port.write(b"ok")
        assert pump_bytes(endpoint, 2) == b"ok"


def test_a_tcp_client_that_does_not_read_loses_bytes_not_the_board(
    endpoint: BoardEndpoint,
) -> None:
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    slow.connect(("127.0.0.1", endpoint.port))
    wait_for(endpoint, lambda: endpoint.stats["clients"] == 1, "the client")
    pty_fd = os.open(endpoint.pty_path, os.O_RDWR | os.O_NOCTTY)
    try:
        payload = ALL_BYTES * 16
        sent = 0
        deadline = time.monotonic() + DEADLINE_S
        # Keep the pty drained; the TCP client reads nothing until its buffers are full.
        while endpoint.stats["dropped_out"] == 0:
            assert time.monotonic() < deadline, endpoint.stats
            endpoint.write(payload)
            sent += len(payload)
            drained = 0
            while drained < len(payload):
                assert select.select([pty_fd], [], [], DEADLINE_S)[0], "pty went quiet"
                drained += len(os.read(pty_fd, 65536))
        assert endpoint.stats["clients"] == 1
        assert endpoint.stats["bytes_out"] == sent
        # What the client gets is the stream with bytes missing at the end, never reordered.
        lost = endpoint.stats["dropped_out"]
        received = recv_exactly(slow, sent - lost)
        assert received == (payload * (sent // len(payload)))[: sent - lost]
    finally:
        os.close(pty_fd)
        slow.close()


def test_pty_client_closing_and_reopening_keeps_working(endpoint: BoardEndpoint) -> None:
    for round_ in range(3):
        marker = b"round%d\x00" % round_
        with open_pty(endpoint) as port:
            port.write(marker)
            assert pump_bytes(endpoint, len(marker)) == marker
            endpoint.write(marker[::-1])
            assert read_exactly(port, len(marker)) == marker[::-1]
        # With the client gone the master sees no EIO: polling and writing still work.
        assert endpoint.poll(0) == b""
        endpoint.write(b"into the void")
    assert endpoint.stats["bytes_in"] == sum(len(b"round%d\x00" % r) for r in range(3))


def test_fileno_is_readable_when_a_client_has_sent_something(endpoint: BoardEndpoint) -> None:
    with BoardEndpoint("b2") as other, connect(other) as sock:
        assert endpoint.poll(0) == b"" and other.poll(0) == b""
        assert select.select([endpoint, other], [], [], 0)[0] == []
        sock.sendall(b"ping")
        ready, _, _ = select.select([endpoint, other], [], [], DEADLINE_S)
        assert ready == [other]
        assert other.poll(0) == b"ping"
        assert len(other.selectables()) == 3  # pty master, listener, one client


def test_close_releases_everything_and_is_idempotent() -> None:
    ep = BoardEndpoint("b3")
    client = connect(ep)
    port = ep.port
    ep.close()
    ep.close()
    assert ep.closed
    assert ep.selectables() == ()
    assert "closed" in repr(ep)
    with pytest.raises(ValueError, match="board endpoint 'b3' is closed"):
        ep.poll()
    with pytest.raises(ValueError, match="closed"):
        ep.write(b"x")
    client.settimeout(DEADLINE_S)
    assert client.recv(10) == b""  # the endpoint hung up
    client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S).close()


def test_a_given_port_is_used(endpoint: BoardEndpoint) -> None:
    with pytest.raises(OSError):
        BoardEndpoint("clash", port=endpoint.port)
    with BoardEndpoint("ipv4", host="127.0.0.1", port=0) as ep:
        assert ep.url.startswith("socket://127.0.0.1:")
