"""A small Python client for the egress service.

Uses Debian's python3-grpcio; the stubs (egress/v1/egress_pb2*.py) are generated
from proto/egress/v1/egress.proto at build time (bazel build
//client/python:egress_py) and found on PYTHONPATH, never committed.

    from egress_client import EgressClient
    client = EgressClient("127.0.0.1:50051")
    r = client.get("https://api.example.com/items")
    print(r.status, r.header("content-type"), len(r.body))
    for piece in client.stream("GET", "https://api.example.com/events"):
        ...

Errors raise grpc.RpcError with the service's code and message (e.g.
grpc.StatusCode.PERMISSION_DENIED). One client may be shared by threads.
"""

import dataclasses
from typing import Iterator, List, Optional, Sequence, Tuple

import grpc
from egress.v1 import egress_pb2, egress_pb2_grpc

Headers = Sequence[Tuple[str, str]]


def _value(header: "egress_pb2.Header") -> str:
    """A header's value as str. Bytes that are not UTF-8 arrive in raw_value
    and are decoded as ISO-8859-1, as Python's http.client does, so that every
    byte survives: value.encode("latin-1") gives them back."""
    if header.raw_value:
        return header.raw_value.decode("latin-1")
    return header.value


@dataclasses.dataclass
class Response:
    status: int
    headers: List[Tuple[str, str]]
    body: bytes
    timing: "egress_pb2.Timing"

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name` (case-insensitive), or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class EgressClient:
    """Calls egress.v1.EgressService over one channel, created once."""

    def __init__(self, target: str, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 deadline: float = 30.0):
        options = [("grpc.max_receive_message_length", -1)]
        if target.startswith("dns:"):
            options.append(("grpc.lb_policy_name", "round_robin"))
        self._channel = (grpc.secure_channel(target, credentials, options)
                         if credentials else grpc.insecure_channel(target, options))
        self._stub = egress_pb2_grpc.EgressServiceStub(self._channel)
        self._metadata = [("authorization", "Bearer " + token)] if token else []
        self._deadline = deadline

    def close(self) -> None:
        self._channel.close()

    @staticmethod
    def _request(method: str, url: str, headers: Headers, body: bytes,
                 timeout: Optional[float], kind=egress_pb2.DoRequest):
        request = kind(method=method, url=url, body=body)
        for name, value in headers:
            request.headers.add(name=name, value=value)
        if timeout:
            request.timeout.FromNanoseconds(int(timeout * 1e9))
        return request

    def do(self, method: str, url: str, headers: Headers = (), body: bytes = b"",
           timeout: Optional[float] = None,
           deadline: Optional[float] = None) -> Response:
        """One request; `timeout` bounds the upstream, `deadline` the call (s)."""
        reply = self._stub.Do(self._request(method, url, headers, body, timeout),
                              timeout=deadline or self._deadline,
                              metadata=self._metadata)
        return Response(reply.status, [(h.name, _value(h)) for h in reply.headers],
                        reply.body, reply.timing)

    def get(self, url: str, headers: Headers = (), **kwargs) -> Response:
        return self.do("GET", url, headers, **kwargs)

    def post(self, url: str, body: bytes, headers: Headers = (),
             **kwargs) -> Response:
        return self.do("POST", url, headers, body, **kwargs)

    def stream(self, method: str, url: str, headers: Headers = (),
               body: bytes = b"", timeout: Optional[float] = None,
               deadline: Optional[float] = None,
               head: Optional[list] = None) -> Iterator[bytes]:
        """Yields body pieces as they arrive. If `head` is a list, the head
        (status, headers) is appended to it when it arrives. A failure mid-body
        raises grpc.RpcError: a stream that ends without one is complete.
        A stream has no deadline unless `deadline` gives one: event streams
        last minutes, and the service ends a silent one
        (--stream_idle_timeout)."""
        call = self._stub.DoStream(self._request(method, url, headers, body, timeout,
                                                 egress_pb2.DoStreamRequest),
                                   timeout=deadline,
                                   metadata=self._metadata)
        for chunk in call:
            if chunk.HasField("head"):
                if head is not None:
                    head.append((chunk.head.status,
                                 [(h.name, _value(h)) for h in chunk.head.headers]))
            else:
                yield chunk.body
