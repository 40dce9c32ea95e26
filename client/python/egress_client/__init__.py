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

Errors raise EgressError, a grpc.RpcError with the service's code and message
(e.g. grpc.StatusCode.PERMISSION_DENIED) and the details egressd sends: a
stable `reason` ("DESTINATION_DENIED", "CONNECT_REFUSED", ...), its
`metadata`, `retry_delay` (seconds, where waiting helps) and
`field_violations` (docs/errors.md lists the reasons). One client may be
shared by threads.
"""

import dataclasses
import functools
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import grpc
from egress.v1 import egress_pb2, egress_pb2_grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

Headers = Sequence[Tuple[str, str]]


def _value(header: "egress_pb2.Header") -> str:
    """A header's value as str. Bytes that are not UTF-8 arrive in raw_value
    and are decoded as ISO-8859-1, as Python's http.client does, so that every
    byte survives: value.encode("latin-1") gives them back."""
    if header.raw_value:
        return header.raw_value.decode("latin-1")
    return header.value


@functools.lru_cache(maxsize=None)
def _rpc_types() -> Dict[str, type]:
    """google.rpc message classes from google_rpc.binpb, in a private pool."""
    path = os.path.join(os.path.dirname(__file__), "google_rpc.binpb")
    with open(path, "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is None:  # protobuf < 4.21
        get_class = message_factory.MessageFactory(pool).GetPrototype
    names = ("Status", "ErrorInfo", "RetryInfo", "BadRequest")
    return {n: get_class(pool.FindMessageTypeByName("google.rpc." + n))
            for n in names}


class EgressError(grpc.RpcError):
    """A failed call: the gRPC code and message, and egressd's details."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 status_details: bytes = b""):
        super().__init__(f"{code.name}: {message}")
        self._code = code
        self._message = message
        self.reason: str = ""           # "CONNECT_REFUSED", ...; "" if none came
        self.domain: str = ""           # "egress.local"
        self.metadata: Dict[str, str] = {}  # origin, address, limit, ...
        self.retry_delay: Optional[float] = None  # seconds (RetryInfo)
        self.field_violations: List[Tuple[str, str]] = []  # (field, why)
        if status_details:
            self._decode(status_details)

    def _decode(self, data: bytes) -> None:
        types = _rpc_types()
        status = types["Status"].FromString(data)
        for detail in status.details:
            name = detail.type_url.rsplit("/", 1)[-1]
            if name == "google.rpc.ErrorInfo":
                info = types["ErrorInfo"].FromString(detail.value)
                self.reason, self.domain = info.reason, info.domain
                self.metadata = dict(info.metadata)
            elif name == "google.rpc.RetryInfo":
                delay = types["RetryInfo"].FromString(detail.value).retry_delay
                self.retry_delay = delay.seconds + delay.nanos / 1e9
            elif name == "google.rpc.BadRequest":
                bad = types["BadRequest"].FromString(detail.value)
                self.field_violations = [(v.field, v.description)
                                         for v in bad.field_violations]

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "EgressError":
        details = b""
        for key, value in (error.trailing_metadata() or ()):
            if key == "grpc-status-details-bin":
                details = value
        return cls(error.code(), error.details() or "", details)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message


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
        try:
            reply = self._stub.Do(self._request(method, url, headers, body, timeout),
                                  timeout=deadline or self._deadline,
                                  metadata=self._metadata)
        except grpc.RpcError as error:
            raise EgressError.from_rpc_error(error) from None
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
        try:
            for chunk in call:
                if chunk.HasField("head"):
                    if head is not None:
                        head.append((chunk.head.status,
                                     [(h.name, _value(h))
                                      for h in chunk.head.headers]))
                else:
                    yield chunk.body
        except grpc.RpcError as error:
            raise EgressError.from_rpc_error(error) from None
