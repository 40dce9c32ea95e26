"""What the HTTP adapters (egress_client.httpx, egress_client.requests)
share: which headers egress owns, how a request body is collected, how an
egress error is classed, and a watchdog for read timeouts."""

import heapq
import itertools
import threading
import time
from typing import Callable, Iterable, List, Optional, Tuple, Union

from egress_client._common import EgressError

# egressd's default --max_request_bytes: a body over it fails in the adapter,
# before any call, with the library's own kind of error.
DEFAULT_MAX_REQUEST_BYTES = 16 << 20

# Headers egress owns (docs/api.md): hop-by-hop ones, Host (the URL names the
# origin) and the body's framing (egressd frames the body it sends).
_OWNED = frozenset({"connection", "keep-alive", "te", "trailer", "upgrade",
                    "transfer-encoding", "host", "content-length"})


def client_for(kind, client, target, token, credentials, adapter: str):
    """The client an adapter uses, and the one it owns (made from `target`,
    closed with the adapter) or None."""
    if client is not None:
        return client, None
    if target is None:
        raise TypeError(f"{adapter} needs a client or a target")
    made = kind(target, token=token, credentials=credentials)
    return made, made


def caller_headers(pairs: Iterable[Tuple[Union[str, bytes], Union[str, bytes]]]
                   ) -> List[Tuple[Union[str, bytes], Union[str, bytes]]]:
    """The headers a library built, without those egress owns."""
    kept = []
    for name, value in pairs:
        text = name.decode("latin-1") if isinstance(name, bytes) else name
        lower = text.lower()
        if lower in _OWNED or lower.startswith("proxy-"):
            continue
        kept.append((text, value))
    return kept


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the request body is over {limit} bytes, egress's "
                         "request limit (max_request_bytes)")
        self.limit = limit


def collect_body(pieces: Iterable[Union[bytes, str]], limit: int) -> bytes:
    """The whole body of a request, raising BodyTooLarge past `limit`."""
    parts, size = [], 0
    for piece in pieces:
        if isinstance(piece, str):
            piece = piece.encode("utf-8")
        size += len(piece)
        if size > limit:
            raise BodyTooLarge(limit)
        parts.append(piece)
    return b"".join(parts)


# How each library's exceptions are chosen: egress's reason, classed.
CONNECT, CONNECT_TIMEOUT, TLS, TIMEOUT, PROTOCOL, EGRESS = (
    "connect", "connect_timeout", "tls", "timeout", "protocol", "egress")
_CLASSES = {
    "DNS_FAILED": CONNECT, "CONNECT_REFUSED": CONNECT,
    "CONNECT_TIMEOUT": CONNECT_TIMEOUT,
    "TLS_VERIFY_FAILED": TLS, "TLS_HANDSHAKE_FAILED": TLS,
    "UPSTREAM_RESET": PROTOCOL, "BODY_INCOMPLETE": PROTOCOL,
    "BAD_RESPONSE": PROTOCOL, "HEAD_TOO_LARGE": PROTOCOL,
    "UPSTREAM_FAILED": PROTOCOL,
    "UPSTREAM_TIMEOUT": TIMEOUT, "STREAM_IDLE": TIMEOUT,
    "DEADLINE_EXCEEDED": TIMEOUT,
}


def classify(error: EgressError) -> str:
    """connect, connect_timeout, tls, timeout, protocol, or egress (a policy
    refusal, a limit, authentication, egress itself unreachable, ...)."""
    kind = _CLASSES.get(error.reason)
    if kind == CONNECT and error.code().name == "DEADLINE_EXCEEDED":
        return CONNECT_TIMEOUT  # DNS cut by the deadline
    if kind is None and not error.reason and error.code().name == "DEADLINE_EXCEEDED":
        return TIMEOUT
    return kind or EGRESS


def describe(error: EgressError) -> str:
    reason = f" ({error.reason})" if error.reason else ""
    return f"egress: {error.details()}{reason}"


def keep_reason(exc: BaseException, error: EgressError) -> BaseException:
    """Puts egress's reason, metadata and retry delay on a library's exception."""
    exc.egress_error = error
    exc.reason = error.reason
    exc.metadata = error.metadata
    exc.retry_delay = error.retry_delay
    return exc


def head_and_read_timeouts(connect: Optional[float], read: Optional[float]
                           ) -> Tuple[Optional[float], Optional[float]]:
    """The head must come within connect + read (what a direct connection
    allows before the first byte); each later piece within read."""
    if connect is None and read is None:
        return None, None
    return (connect or 0) + (read or 0), read


class Watchdog:
    """Cancels calls whose next message is late, for every call of one
    adapter from one thread. Arming is a heap push under a lock; the thread
    wakes only when the earliest due time moves earlier."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: List[Tuple[float, int]] = []
        self._armed = {}  # ticket -> (due, on_expiry)
        self._tickets = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._wake_at = float("inf")

    def arm(self, seconds: float, on_expiry: Callable[[], None]) -> int:
        due = time.monotonic() + seconds
        with self._cv:
            ticket = next(self._tickets)
            self._armed[ticket] = (due, on_expiry)
            heapq.heappush(self._heap, (due, ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="egress-watchdog")
                self._thread.start()
            elif due < self._wake_at:
                self._cv.notify()
        return ticket

    def disarm(self, ticket: int) -> None:
        with self._cv:
            self._armed.pop(ticket, None)
            # Disarmed entries leave the heap when they come due; trim it
            # when most of it is stale.
            if len(self._heap) > 64 and len(self._heap) > 4 * len(self._armed):
                self._heap = [(d, t) for d, t in self._heap if t in self._armed]
                heapq.heapify(self._heap)

    def _run(self) -> None:
        while True:
            expired = []
            with self._cv:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, ticket = heapq.heappop(self._heap)
                    entry = self._armed.pop(ticket, None)
                    if entry is not None:
                        expired.append(entry[1])
                if not expired:
                    self._wake_at = self._heap[0][0] if self._heap else float("inf")
                    self._cv.wait(None if not self._heap else self._wake_at - now)
                    self._wake_at = float("inf")
                    continue
            for on_expiry in expired:
                on_expiry()


class TimedStream:
    """An OpenStream whose head and pieces must come in time: a late one
    cancels the call, and `timed_out` says so."""

    def __init__(self, stream, watchdog: Watchdog, head_timeout: Optional[float],
                 read_timeout: Optional[float]):
        self.stream = stream
        self.timed_out = False
        self._watchdog = watchdog
        self._head_timeout = head_timeout
        self._read_timeout = read_timeout

    def _expire(self) -> None:
        self.timed_out = True
        self.stream.cancel()

    def _timed(self, seconds: Optional[float], step: Callable):
        if seconds is None:
            return step()
        ticket = self._watchdog.arm(seconds, self._expire)
        try:
            return step()
        finally:
            self._watchdog.disarm(ticket)

    def read_head(self):
        return self._timed(self._head_timeout, self.stream.read_head)

    def pieces(self):
        iterator = iter(self.stream)
        while True:
            try:
                piece = self._timed(self._read_timeout, lambda: next(iterator))
            except StopIteration:
                return
            yield piece

    def close(self) -> None:
        self.stream.close()
