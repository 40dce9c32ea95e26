"""httpx transports that send every request through egress:

    import httpx
    from egress_client import EgressTransport, AsyncEgressTransport
    client = httpx.Client(transport=EgressTransport(target="127.0.0.1:50051"))
    aclient = httpx.AsyncClient(transport=AsyncEgressTransport(target="127.0.0.1:50051"))

Each request is one DoStream call: the head comes back as soon as egressd has
it and the body as it arrives, so `client.stream(...)` yields SSE events one
by one; closing a response cancels the call. httpx keeps its own job:
redirects, cookies, auth, decoding Content-Encoding, its Timeout (connect +
read bound the head, read each later piece). Errors are httpx's own
exceptions (ConnectError, ConnectTimeout, ReadTimeout, RemoteProtocolError)
with egress's `reason`, `metadata` and `retry_delay` on them; a policy
refusal or a limit is an EgressTransportError (an httpx.TransportError).
docs/api.md has the whole mapping.
"""

import asyncio
import http
from typing import AsyncIterator, Iterator, Optional

import grpc
import httpx

from egress_client import EgressClient, EgressError
from egress_client._adapters import (CONNECT, CONNECT_TIMEOUT, DEFAULT_MAX_REQUEST_BYTES,
                                     PROTOCOL, TIMEOUT, TLS, BodyTooLarge, TimedStream,
                                     Watchdog, caller_headers, client_for, classify, collect_body,
                                     describe, head_and_read_timeouts, keep_reason)
from egress_client.aio import AsyncEgressClient

__all__ = ["EgressTransport", "AsyncEgressTransport", "EgressTransportError"]


class EgressTransportError(httpx.TransportError):
    """egress refused or could not perform the request for a reason of its
    own: a policy refusal, a limit, authentication, egress unreachable.
    `reason`, `metadata`, `retry_delay` and `egress_error` say which."""


_EXCEPTIONS = {CONNECT: httpx.ConnectError, CONNECT_TIMEOUT: httpx.ConnectTimeout,
               TLS: httpx.ConnectError, TIMEOUT: httpx.ReadTimeout,
               PROTOCOL: httpx.RemoteProtocolError}


def _httpx_error(error: EgressError, request: httpx.Request) -> Exception:
    kind = _EXCEPTIONS.get(classify(error), EgressTransportError)
    return keep_reason(kind(describe(error), request=request), error)


def _timeouts(request: httpx.Request):
    t = request.extensions.get("timeout") or {}
    return head_and_read_timeouts(t.get("connect"), t.get("read"))


def _response(head, stream, request) -> httpx.Response:
    try:
        phrase = http.HTTPStatus(head.status).phrase.encode()
    except ValueError:
        phrase = b""
    return httpx.Response(head.status, headers=head.header_bytes(), stream=stream,
                          request=request,
                          extensions={"http_version": b"HTTP/1.1",
                                      "reason_phrase": phrase})


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, timed: TimedStream, request: httpx.Request):
        self._timed = timed
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._timed.pieces()
        except EgressError as error:
            if self._timed.timed_out:
                raise httpx.ReadTimeout("egress: no body bytes within the read timeout",
                                        request=self._request) from None
            raise _httpx_error(error, self._request) from None

    def close(self) -> None:
        self._timed.close()


class EgressTransport(httpx.BaseTransport):
    """An httpx transport over an EgressClient (given, or made from target,
    token and credentials and then owned). `max_request_bytes` is egress's
    request limit: a bigger body fails here, before any call."""

    def __init__(self, client: Optional[EgressClient] = None, *,
                 target: Optional[str] = None, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        self._client, self._owned = client_for(EgressClient, client, target, token,
                                               credentials, "EgressTransport")
        self._limit = max_request_bytes
        self._watchdog = Watchdog()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            body = collect_body(request.stream, self._limit)
        except BodyTooLarge as error:
            raise EgressTransportError(str(error), request=request) from None
        head_timeout, read_timeout = _timeouts(request)
        stream = self._client.open(request.method, str(request.url),
                                   caller_headers(request.headers.raw), body)
        timed = TimedStream(stream, self._watchdog, head_timeout, read_timeout)
        try:
            head = timed.read_head()
        except EgressError as error:
            if timed.timed_out:
                raise httpx.ReadTimeout("egress: no response head within the timeout",
                                        request=request) from None
            raise _httpx_error(error, request) from None
        return _response(head, _SyncBody(timed, request), request)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, stream, read_timeout: Optional[float], request: httpx.Request):
        self._stream = stream
        self._read_timeout = read_timeout
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            piece = await _timed_read(self._stream.read(), self._read_timeout,
                                      self._stream, self._request, "body bytes")
            if not piece:
                return
            yield piece

    async def aclose(self) -> None:
        self._stream.close()


async def _timed_read(step, seconds: Optional[float], stream, request, what: str):
    try:
        if seconds is None:
            return await step
        return await asyncio.wait_for(step, seconds)
    except asyncio.TimeoutError:
        stream.close()
        raise httpx.ReadTimeout(f"egress: no {what} within the read timeout",
                                request=request) from None
    except EgressError as error:
        raise _httpx_error(error, request) from None


class AsyncEgressTransport(httpx.AsyncBaseTransport):
    """As EgressTransport, for httpx.AsyncClient, over an AsyncEgressClient."""

    def __init__(self, client: Optional[AsyncEgressClient] = None, *,
                 target: Optional[str] = None, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        self._client, self._owned = client_for(AsyncEgressClient, client, target, token,
                                               credentials, "AsyncEgressTransport")
        self._limit = max_request_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parts, size = [], 0
        async for piece in request.stream:
            size += len(piece)
            if size > self._limit:
                raise EgressTransportError(str(BodyTooLarge(self._limit)),
                                           request=request)
            parts.append(piece)
        head_timeout, read_timeout = _timeouts(request)
        stream = self._client.open(request.method, str(request.url),
                                   caller_headers(request.headers.raw), b"".join(parts))
        head = await _timed_read(stream.read_head(), head_timeout, stream, request,
                                 "response head")
        return _response(head, _AsyncBody(stream, read_timeout, request), request)

    async def aclose(self) -> None:
        if self._owned is not None:
            await self._owned.close()
