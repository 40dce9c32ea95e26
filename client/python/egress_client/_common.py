"""What the synchronous and the asyncio clients share: requests, responses,
errors and channel options."""

import dataclasses
import functools
import os
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from egress.v1 import egress_pb2

Headers = Sequence[Tuple[Union[str, bytes], Union[str, bytes]]]
RequestMessage = Union[egress_pb2.DoRequest, egress_pb2.DoStreamRequest]


def header_value(header: egress_pb2.Header) -> str:
    """A header's value as str. Bytes that are not UTF-8 arrive in raw_value
    and are decoded as ISO-8859-1, as Python's http.client does, so that every
    byte survives: value.encode("latin-1") gives them back."""
    if header.raw_value:
        return header.raw_value.decode("latin-1")
    return header.value


@dataclasses.dataclass
class Response:
    """An upstream's answer: any HTTP status, 404 and 503 included."""

    status: int
    headers: List[Tuple[str, str]]
    body: bytes
    # connection_reused, attempts, queued, dns, connect, tls, first_byte,
    # upstream, total, retry_wait, remote_address, remote_port
    timing: egress_pb2.Timing

    # The headers as egressd sent them (Header messages).
    fields: List[egress_pb2.Header] = dataclasses.field(default_factory=list,
                                                         repr=False)

    def header_bytes(self) -> List[Tuple[bytes, bytes]]:
        """The headers as the bytes the upstream sent."""
        return [(h.name.encode("latin-1"), h.raw_value or h.value.encode("utf-8"))
                for h in self.fields]

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name` (case-insensitive), or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


def response_from(reply: Union[egress_pb2.DoResponse, egress_pb2.ResponseHead],
                  body: bytes = b"") -> Response:
    return Response(reply.status, [(h.name, header_value(h)) for h in reply.headers],
                    body, reply.timing, list(reply.headers))


def stream_part(chunk: egress_pb2.DoStreamResponse,
                head: Optional[List[Response]]) -> Optional[bytes]:
    """One DoStream message: body bytes, or None for the head (appended to
    `head` when it is a list)."""
    if chunk.HasField("head"):
        if head is not None:
            head.append(response_from(chunk.head))
        return None
    return chunk.body


def add_header(request: RequestMessage, name: Union[str, bytes],
               value: Union[str, bytes]) -> None:
    """Adds a header; bytes that are not UTF-8 go in raw_value, unchanged."""
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            request.headers.add(name=name, raw_value=value)
            return
    request.headers.add(name=name, value=value)


def build_request(kind: Type[RequestMessage], method: str, url: str,
                  headers: Headers, body: bytes, timeout: Optional[float],
                  retry_attempts: int, retry_max_wait: Optional[float]) -> RequestMessage:
    request = kind(method=method, url=url, body=body)
    for name, value in headers:
        add_header(request, name, value)
    if timeout:
        request.timeout.FromNanoseconds(int(timeout * 1e9))
    if retry_attempts > 1:
        request.retry.max_attempts = retry_attempts
        if retry_max_wait is not None:
            request.retry.max_wait.FromNanoseconds(int(retry_max_wait * 1e9))
    return request


def channel_options(target: str) -> List[Tuple[str, object]]:
    options: List[Tuple[str, object]] = [("grpc.max_receive_message_length", -1)]
    if target.startswith("dns:"):
        options.append(("grpc.lb_policy_name", "round_robin"))
    return options


@functools.lru_cache(maxsize=None)
def _rpc_types() -> Dict[str, type]:
    """google.rpc message classes from google_rpc.binpb, in a private pool:
    no google/rpc module that could clash with googleapis-common-protos in the
    caller's process."""
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
    """A failed call: the gRPC code and message, and the details egressd
    sends with every error (docs/errors.md lists the reasons)."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 status_details: bytes = b""):
        super().__init__(f"{code.name}: {message}")
        self._code = code
        self._message = message
        self.reason: str = ""               # "CONNECT_REFUSED", ...; "" if none came
        self.domain: str = ""               # "egress.local"
        self.metadata: Dict[str, str] = {}  # origin, address, limit, ...
        self.retry_delay: Optional[float] = None  # seconds (RetryInfo)
        self.field_violations: List[Tuple[str, str]] = []  # (field, why)
        if status_details:
            try:
                self._decode(status_details)
            except Exception:  # the code and the message still stand
                pass

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
