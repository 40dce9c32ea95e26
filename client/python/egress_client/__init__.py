"""Python clients for the egress service: EgressClient (synchronous) and
AsyncEgressClient (asyncio, grpc.aio), with the same methods.

    from egress_client import EgressClient, EgressError
    client = EgressClient("127.0.0.1:50051")
    r = client.get("https://api.example.com/items", timeout=5)
    print(r.status, r.header("content-type"), len(r.body), r.timing.first_byte)
    for piece in client.stream("GET", "https://api.example.com/events"):
        ...

    async with AsyncEgressClient("127.0.0.1:50051") as client:
        r = await client.get("https://api.example.com/items")
        async for piece in client.stream("GET", "https://api.example.com/events"):
            ...

Errors raise EgressError, a grpc.RpcError with the service's code and message
(e.g. grpc.StatusCode.PERMISSION_DENIED) and the details egressd sends: a
stable `reason` ("DESTINATION_DENIED", "CONNECT_REFUSED", ...), its
`metadata`, `retry_delay` (seconds, where waiting helps) and
`field_violations`. One client may be shared by threads (or tasks).
"""

from typing import Iterator, List, Optional

import grpc

from egress.v1 import egress_pb2, egress_pb2_grpc
from egress_client._common import (EgressError, Headers, Response,
                                   build_request, channel_options, response_from,
                                   stream_part)

__all__ = ["EgressClient", "AsyncEgressClient", "EgressError", "Response",
           "OpenStream"]


class EgressClient:
    """Calls egress.v1.EgressService over one channel, created once."""

    def __init__(self, target: str, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 deadline: float = 30.0):
        options = channel_options(target)
        self._channel = (grpc.secure_channel(target, credentials, options)
                         if credentials else grpc.insecure_channel(target, options))
        self._stub = egress_pb2_grpc.EgressServiceStub(self._channel)
        self._metadata = [("authorization", "Bearer " + token)] if token else []
        self._deadline = deadline

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "EgressClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def do(self, method: str, url: str, headers: Headers = (), body: bytes = b"",
           timeout: Optional[float] = None, deadline: Optional[float] = None,
           retry_attempts: int = 0,
           retry_max_wait: Optional[float] = None) -> Response:
        """One request; `timeout` bounds the upstream, `deadline` the call
        (seconds). `retry_attempts` > 1 retries answers that ask for it (429 or
        503 with Retry-After) up to that many attempts in all."""
        request = build_request(egress_pb2.DoRequest, method, url, headers, body,
                                timeout, retry_attempts, retry_max_wait)
        try:
            reply = self._stub.Do(request, timeout=deadline or self._deadline,
                                  metadata=self._metadata)
        except grpc.RpcError as error:
            raise EgressError.from_rpc_error(error) from None
        return response_from(reply, reply.body)

    def get(self, url: str, headers: Headers = (), **kwargs) -> Response:
        return self.do("GET", url, headers, **kwargs)

    def post(self, url: str, body: bytes, headers: Headers = (),
             **kwargs) -> Response:
        return self.do("POST", url, headers, body, **kwargs)

    def stream(self, method: str, url: str, headers: Headers = (),
               body: bytes = b"", timeout: Optional[float] = None,
               deadline: Optional[float] = None,
               head: Optional[List[Response]] = None, retry_attempts: int = 0,
               retry_max_wait: Optional[float] = None) -> Iterator[bytes]:
        """Yields body pieces as they arrive. If `head` is a list, the head (a
        Response with an empty body) is appended to it when it arrives. A
        failure mid-body raises EgressError: a stream that ends without one is
        complete. A stream has no deadline unless `deadline` gives one: event
        streams last minutes, and the service ends a silent one
        (--stream_idle_timeout)."""
        request = build_request(egress_pb2.DoStreamRequest, method, url, headers,
                                body, timeout, retry_attempts, retry_max_wait)
        call = self._stub.DoStream(request, timeout=deadline,
                                   metadata=self._metadata)
        try:
            for chunk in call:
                piece = stream_part(chunk, head)
                if piece is not None:
                    yield piece
        except grpc.RpcError as error:
            raise EgressError.from_rpc_error(error) from None


    def open(self, method: str, url: str, headers: Headers = (),
             body: bytes = b"", timeout: Optional[float] = None,
             deadline: Optional[float] = None) -> "OpenStream":
        """Starts a DoStream call and returns at once: read_head() waits for
        the head, iterating yields body pieces, close() cancels the call. The
        HTTP adapters are built on it (egress_client.httpx, .requests)."""
        request = build_request(egress_pb2.DoStreamRequest, method, url, headers,
                                body, timeout, 0, None)
        return OpenStream(self._stub.DoStream(request, timeout=deadline,
                                              metadata=self._metadata))


class OpenStream:
    """A DoStream call (EgressClient.open). close() or cancel() at any time
    cancels it, from any thread: egressd then aborts the upstream exchange."""

    def __init__(self, call: grpc.Call):
        self._call = call
        self.done = False  # the whole body arrived, or the call failed

    def read_head(self) -> Response:
        """The response head (a Response with an empty body)."""
        try:
            first = next(self._call)
        except StopIteration:
            self.done = True
            raise EgressError(grpc.StatusCode.INTERNAL,
                              "the stream ended before its head") from None
        except grpc.RpcError as error:
            self.done = True
            raise EgressError.from_rpc_error(error) from None
        return response_from(first.head)

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._call:
                if chunk.body:
                    yield chunk.body
        except grpc.RpcError as error:
            self.done = True
            raise EgressError.from_rpc_error(error) from None
        self.done = True

    def cancel(self) -> None:
        self._call.cancel()

    def close(self) -> None:
        """Cancels the call unless it has ended."""
        if not self.done:
            self.done = True
            self._call.cancel()


from egress_client.aio import AsyncEgressClient  # noqa: E402

_ADAPTERS = {
    "EgressTransport": "egress_client.httpx",
    "AsyncEgressTransport": "egress_client.httpx",
    "EgressTransportError": "egress_client.httpx",
    "EgressAdapter": "egress_client.requests",
    "EgressRequestError": "egress_client.requests",
}


def __getattr__(name: str) -> object:
    """The adapters, imported when first named, so that the package imports
    without httpx or requests installed."""
    module = _ADAPTERS.get(name)
    if module is None:
        raise AttributeError(f"module 'egress_client' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module), name)
