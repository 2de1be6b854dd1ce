"""A simulated serial link between two sessions, on a simulated clock, with faults.

Each direction drops, duplicates, corrupts, reorders, delays and chops frames with
the given probabilities, from a seeded PRNG that behaves the same on CPython and
MicroPython, so a failing seed replays exactly on both.
"""

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from collections.abc import Callable

    from protocol.session import Session


class Rng:
    """xorshift32: small, deterministic, identical on every interpreter."""

    def __init__(self, seed: int) -> None:
        self.state = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def next(self) -> int:
        """The next 32-bit value."""
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n: int) -> int:
        """A value in range(n)."""
        return self.next() % n

    def chance(self, per_mille: int) -> bool:
        """True with probability per_mille / 1000."""
        return per_mille > 0 and self.below(1000) < per_mille

    def bytes(self, n: int) -> bytes:
        """n pseudo-random bytes (for nonces in tests, never for real keys)."""
        return bytes(self.below(256) for _ in range(n))


class Faults:
    """What a wire does wrong, as per-mille chances per frame, and latencies in ms."""

    def __init__(
        self,
        drop: int = 0,
        duplicate: int = 0,
        corrupt: int = 0,
        reorder: int = 0,
        chop: int = 0,
        latency_ms: int = 1,
        jitter_ms: int = 0,
    ) -> None:
        self.drop = drop
        self.duplicate = duplicate
        self.corrupt = corrupt
        self.reorder = reorder
        self.chop = chop
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms


class Wire:
    """One direction of the link: frames written now arrive later, perhaps damaged."""

    def __init__(self, rng: Rng, faults: Faults) -> None:
        self.rng = rng
        self.faults = faults
        self.now = 0
        self.enabled = True  # False: the cable is pulled, everything is lost
        self._queue: "list[list[object]]" = []  # [due, bytes], kept in delivery order
        self.sent = 0
        self.dropped = 0

    def write(self, data: "bytes | bytearray | memoryview") -> None:
        """Accept one encoded frame from a session."""
        self.sent += 1
        f = self.faults
        rng = self.rng
        if not self.enabled or rng.chance(f.drop):
            self.dropped += 1
            return
        frame = bytearray(data)
        if rng.chance(f.corrupt):
            i = rng.below(len(frame))
            frame[i] ^= 1 << rng.below(8)
        copies = 2 if rng.chance(f.duplicate) else 1
        for _ in range(copies):
            due = self.now + f.latency_ms + (rng.below(f.jitter_ms + 1) if f.jitter_ms else 0)
            if rng.chance(f.chop) and len(frame) > 1:
                cut = 1 + rng.below(len(frame) - 1)
                self._insert(due, bytes(frame[:cut]), False)
                self._insert(due, bytes(frame[cut:]), False)
            else:
                self._insert(due, bytes(frame), rng.chance(f.reorder))

    def _insert(self, due: int, data: bytes, early: bool) -> None:
        q = self._queue
        if early and q:
            # overtake the last frame still in the wire
            last = q[-1]
            q.insert(len(q) - 1, [last[0], data])
            return
        i = len(q)
        while i > 0 and q[i - 1][0] > due:  # type: ignore[operator]
            i -= 1
        q.insert(i, [due, data])

    def deliver(self, now: int, session: "Session") -> None:
        """Feed everything due by now to the receiving session."""
        q = self._queue
        while q and q[0][0] <= now:  # type: ignore[operator]
            session.feed(q.pop(0)[1], now)  # type: ignore[arg-type]

    @property
    def pending(self) -> int:
        """Frames (or frame pieces) still on the wire."""
        return len(self._queue)


class Loopback:
    """Two sessions joined by two wires, driven by one simulated clock in ms."""

    def __init__(
        self, seed: int, faults: "Faults | None" = None, back_faults: "Faults | None" = None
    ) -> None:
        self.rng = Rng(seed)
        f = faults if faults is not None else Faults()
        self.forward = Wire(Rng(seed * 2 + 1), f)  # initiator -> responder
        self.back = Wire(Rng(seed * 2 + 2), back_faults if back_faults is not None else f)
        self.now = 0
        self.a: "Session | None" = None
        self.b: "Session | None" = None

    def random(self, n: int) -> bytes:
        """Nonce source for both sessions (deterministic per seed)."""
        return self.rng.bytes(n)

    def attach(self, initiator: "Session", responder: "Session") -> None:
        """Join the two sessions (created with write=forward.write / back.write)."""
        self.a = initiator
        self.b = responder

    def step(self, ms: int, tick: "Callable[[int], object] | None" = None) -> None:
        """Advance the clock by ms: deliver, let the application act, run timers."""
        a = self.a
        b = self.b
        assert a is not None and b is not None, "attach() the sessions first"
        self.now += ms
        now = self.now
        self.forward.now = now
        self.back.now = now
        self.forward.deliver(now, b)
        self.back.deliver(now, a)
        if tick is not None:
            tick(now)
        b.poll(now)
        a.poll(now)

    def run(
        self,
        ms: int,
        step_ms: int = 2,
        tick: "Callable[[int], object] | None" = None,
        until: "Callable[[], bool] | None" = None,
    ) -> bool:
        """Step for up to ms of simulated time; True as soon as until() holds."""
        end = self.now + ms
        while self.now < end:
            self.step(step_ms, tick)
            if until is not None and until():
                return True
        return until is None


class Mailbox:
    """A lossless wire: written frames are kept (copied) until delivered."""

    def __init__(self) -> None:
        self.frames: "list[bytes]" = []

    def write(self, view: "bytes | bytearray | memoryview") -> None:
        """The session's write callback."""
        self.frames.append(bytes(view))

    def deliver(self, session: "Session", now: int) -> None:
        """Feed every waiting frame to session, oldest first."""
        frames = self.frames
        while frames:
            session.feed(frames.pop(0), now)


def pump(
    initiator: "Session",
    to_initiator: Mailbox,
    responder: "Session",
    to_responder: Mailbox,
    now: int,
    rounds: int = 10,
) -> None:
    """Deliver both ways and run both sessions' timers until the mailboxes stay empty."""
    for _ in range(rounds):
        to_responder.deliver(responder, now)
        to_initiator.deliver(initiator, now)
        responder.poll(now)
        initiator.poll(now)
        if not to_responder.frames and not to_initiator.frames:
            return
