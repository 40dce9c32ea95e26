from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DoRequest(_message.Message):
    __slots__ = ["body", "headers", "method", "retry", "timeout", "url"]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    method: str
    retry: RetryPolicy
    timeout: _duration_pb2.Duration
    url: str
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class DoResponse(_message.Message):
    __slots__ = ["body", "headers", "status", "timing"]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    status: int
    timing: Timing
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ...) -> None: ...

class DoStreamRequest(_message.Message):
    __slots__ = ["body", "headers", "method", "retry", "timeout", "url"]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    method: str
    retry: RetryPolicy
    timeout: _duration_pb2.Duration
    url: str
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class DoStreamResponse(_message.Message):
    __slots__ = ["body", "head"]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    head: ResponseHead
    def __init__(self, head: _Optional[_Union[ResponseHead, _Mapping]] = ..., body: _Optional[bytes] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ["name", "raw_value", "value"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAW_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    raw_value: bytes
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., raw_value: _Optional[bytes] = ...) -> None: ...

class ResponseHead(_message.Message):
    __slots__ = ["headers", "status", "timing"]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    status: int
    timing: Timing
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ["max_attempts", "max_wait"]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    max_wait: _duration_pb2.Duration
    def __init__(self, max_attempts: _Optional[int] = ..., max_wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ["attempts", "connect", "connection_reused", "dns", "first_byte", "queued", "remote_address", "remote_port", "retry_wait", "tls", "total", "upstream"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_REUSED_FIELD_NUMBER: _ClassVar[int]
    CONNECT_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    FIRST_BYTE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REMOTE_PORT_FIELD_NUMBER: _ClassVar[int]
    RETRY_WAIT_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    connect: _duration_pb2.Duration
    connection_reused: bool
    dns: _duration_pb2.Duration
    first_byte: _duration_pb2.Duration
    queued: _duration_pb2.Duration
    remote_address: str
    remote_port: int
    retry_wait: _duration_pb2.Duration
    tls: _duration_pb2.Duration
    total: _duration_pb2.Duration
    upstream: _duration_pb2.Duration
    def __init__(self, connection_reused: bool = ..., attempts: _Optional[int] = ..., queued: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., upstream: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., total: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., dns: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., connect: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., tls: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., first_byte: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., remote_address: _Optional[str] = ..., remote_port: _Optional[int] = ..., retry_wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...
