"""AsyncEgressClient: EgressClient's methods as coroutines, on grpc.aio."""

from typing import AsyncIterator, List, Optional

import grpc
import grpc.aio

from egress.v1 import egress_pb2, egress_pb2_grpc
from egress_client._common import (EgressError, Headers, Response,
                                   build_request, channel_options, response_from,
                                   stream_part)


class AsyncEgressClient:
    """Calls egress.v1.EgressService from asyncio over one channel."""

    def __init__(self, target: str, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 deadline: float = 30.0):
        options = channel_options(target)
        self._channel = (grpc.aio.secure_channel(target, credentials, options)
                         if credentials else grpc.aio.insecure_channel(target, options))
        self._stub = egress_pb2_grpc.EgressServiceStub(self._channel)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self._deadline = deadline

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncEgressClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def do(self, method: str, url: str, headers: Headers = (),
                 body: bytes = b"", timeout: Optional[float] = None,
                 deadline: Optional[float] = None, retry_attempts: int = 0,
                 retry_max_wait: Optional[float] = None) -> Response:
        """As EgressClient.do."""
        request = build_request(egress_pb2.DoRequest, method, url, headers, body,
                                timeout, retry_attempts, retry_max_wait)
        try:
            reply = await self._stub.Do(request, timeout=deadline or self._deadline,
                                        metadata=self._metadata)
        except grpc.RpcError as error:
            raise EgressError.from_rpc_error(error) from None
        return response_from(reply, reply.body)

    async def get(self, url: str, headers: Headers = (), **kwargs) -> Response:
        return await self.do("GET", url, headers, **kwargs)

    async def post(self, url: str, body: bytes, headers: Headers = (),
                   **kwargs) -> Response:
        return await self.do("POST", url, headers, body, **kwargs)

    async def stream(self, method: str, url: str, headers: Headers = (),
                     body: bytes = b"", timeout: Optional[float] = None,
                     deadline: Optional[float] = None,
                     head: Optional[List[Response]] = None,
                     retry_attempts: int = 0,
                     retry_max_wait: Optional[float] = None) -> AsyncIterator[bytes]:
        """As EgressClient.stream, as an async iterator."""
        request = build_request(egress_pb2.DoStreamRequest, method, url, headers,
                                body, timeout, retry_attempts, retry_max_wait)
        call = self._stub.DoStream(request, timeout=deadline,
                                   metadata=self._metadata)
        try:
            async for chunk in call:
                piece = stream_part(chunk, head)
                if piece is not None:
                    yield piece
        except grpc.RpcError as error:
            raise EgressError.from_rpc_error(error) from None

    def open(self, method: str, url: str, headers: Headers = (),
             body: bytes = b"", timeout: Optional[float] = None,
             deadline: Optional[float] = None) -> "AsyncOpenStream":
        """As EgressClient.open, for asyncio."""
        request = build_request(egress_pb2.DoStreamRequest, method, url, headers,
                                body, timeout, 0, None)
        return AsyncOpenStream(self._stub.DoStream(request, timeout=deadline,
                                                   metadata=self._metadata))


class AsyncOpenStream:
    """As OpenStream, for asyncio: await read_head(), await read() (b"" at
    the end), close()."""

    def __init__(self, call: grpc.aio.UnaryStreamCall):
        self._call = call
        self.done = False

    async def read_head(self) -> Response:
        first = await self._read()
        if first is None:
            raise EgressError(grpc.StatusCode.INTERNAL,
                              "the stream ended before its head")
        return response_from(first.head)

    async def read(self) -> bytes:
        """The next body piece as it arrives; b"" once the body is whole."""
        while True:
            message = await self._read()
            if message is None:
                return b""
            if message.body:  # (an empty piece is not the end)
                return message.body

    async def _read(self) -> Optional[egress_pb2.DoStreamResponse]:
        try:
            message = await self._call.read()
        except grpc.RpcError as error:
            self.done = True
            raise EgressError.from_rpc_error(error) from None
        if message is grpc.aio.EOF:
            self.done = True
            return None
        return message

    def close(self) -> None:
        """Cancels the call unless it has ended."""
        if not self.done:
            self.done = True
            self._call.cancel()
