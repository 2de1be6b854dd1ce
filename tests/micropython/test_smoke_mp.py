"""Smoke tests of the MicroPython test harness: the protocol package imports and works."""

from protocol import compat, errors


def test_protocol_error_is_value_error() -> None:
    assert issubclass(errors.ProtocolError, ValueError)
    for cls in (
        errors.CBORError,
        errors.FramingError,
        errors.IntegrityError,
        errors.MessageError,
        errors.SessionError,
    ):
        assert issubclass(cls, errors.ProtocolError)


def test_protocol_error_keeps_value() -> None:
    err = errors.FramingError("frame too long", 300)
    assert err.value == 300
    assert str(err) == "frame too long"
    try:
        raise err
    except ValueError as caught:
        assert caught is err


def test_equal_constant_time() -> None:
    a = bytes(range(32))
    assert compat.equal_constant_time(a, bytes(range(32)))
    assert not compat.equal_constant_time(a, bytes(range(1, 33)))
    assert not compat.equal_constant_time(a, a[:31])
    assert compat.equal_constant_time(b"", b"")


def test_const_is_identity() -> None:
    assert compat.const(7) == 7
