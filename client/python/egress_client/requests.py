"""A requests adapter that sends every request through egress:

    import requests
    from egress_client import EgressAdapter
    session = requests.Session()
    adapter = EgressAdapter(target="127.0.0.1:50051")
    session.mount("http://", adapter)
    session.mount("https://", adapter)

Each request is one DoStream call; the body reaches requests as urllib3's
HTTPResponse over the stream, so `stream=True` with `iter_content` or
`iter_lines` reads it as it arrives, and closing the response cancels the
call. requests keeps its own job: redirects, cookies, auth, decoding
Content-Encoding, `timeout=` (connect + read bound the head, read each later
piece). Errors are requests' own exceptions (ConnectionError, ConnectTimeout,
SSLError, ReadTimeout, ChunkedEncodingError) with egress's `reason`,
`metadata` and `retry_delay` on them; a policy refusal or a limit is an
EgressRequestError (a requests.RequestException). docs/api.md has the whole
mapping.
"""

import http
import http.client
import io
from typing import Optional

import grpc
import requests
import requests.adapters
import urllib3
from urllib3._collections import HTTPHeaderDict
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from egress_client import EgressClient, EgressError
from egress_client._adapters import (CONNECT, CONNECT_TIMEOUT, DEFAULT_MAX_REQUEST_BYTES,
                                     PROTOCOL, TIMEOUT, TLS, BodyTooLarge, TimedStream,
                                     Watchdog, caller_headers, client_for, classify, collect_body,
                                     describe, head_and_read_timeouts, keep_reason)

__all__ = ["EgressAdapter", "EgressRequestError"]


class EgressRequestError(requests.exceptions.RequestException):
    """egress refused or could not perform the request for a reason of its
    own: a policy refusal, a limit, authentication, egress unreachable.
    `reason`, `metadata`, `retry_delay` and `egress_error` say which."""


_EXCEPTIONS = {CONNECT: requests.exceptions.ConnectionError,
               CONNECT_TIMEOUT: requests.exceptions.ConnectTimeout,
               TLS: requests.exceptions.SSLError,
               TIMEOUT: requests.exceptions.ReadTimeout,
               PROTOCOL: requests.exceptions.ConnectionError}


def _timeouts(timeout):
    """requests' timeout=: a number, a (connect, read) pair, or urllib3's
    Timeout."""
    if isinstance(timeout, urllib3.Timeout):
        return head_and_read_timeouts(timeout.connect_timeout, timeout.read_timeout)
    if isinstance(timeout, tuple):
        connect, read = timeout
        return head_and_read_timeouts(connect, read)
    return head_and_read_timeouts(timeout, timeout)


def _body_pieces(body):
    if body is None:
        return ()
    if isinstance(body, (bytes, str)):
        return (body,)
    if hasattr(body, "read"):
        return iter(lambda: body.read(65536), b"" if "b" in getattr(body, "mode", "b") else "")
    return body  # an iterable of bytes or str


class _Body(io.RawIOBase):
    """The stream as a file for urllib3: read() gives the next bytes, b"" at
    the end (and then it is closed, as urllib3 expects); close() cancels."""

    def __init__(self, timed: TimedStream, url: str):
        super().__init__()
        self._timed = timed
        self._pieces = timed.pieces()
        self._left = b""
        self._url = url

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            try:
                self._left = next(self._pieces)
            except StopIteration:
                self.close()
                return 0
            except EgressError as error:
                if self._timed.timed_out:
                    raise ReadTimeoutError(None, self._url, "egress: no body bytes "
                                           "within the read timeout") from None
                raise keep_reason(ProtocolError(describe(error), error), error) from None
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._timed.close()
        super().close()


class _Original:
    """What requests reads cookies from (response._original_response.msg),
    and what urllib3 asks whether the connection is closed."""

    def __init__(self, headers):
        self.msg = http.client.HTTPMessage()
        for name, value in headers:
            self.msg[name] = value

    def isclosed(self) -> bool:  # urllib3 asks it when the response ends
        return True


class EgressAdapter(requests.adapters.BaseAdapter):
    """A requests adapter over an EgressClient (given, or made from target,
    token and credentials and then owned). `max_request_bytes` is egress's
    request limit: a bigger body fails here, before any call. `verify`,
    `cert` and `proxies` are egressd's business (its --ca_file and policy)
    and are ignored."""

    def __init__(self, client: Optional[EgressClient] = None, *,
                 target: Optional[str] = None, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        super().__init__()
        self._client, self._owned = client_for(EgressClient, client, target, token,
                                               credentials, "EgressAdapter")
        self._limit = max_request_bytes
        self._watchdog = Watchdog()

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout=None, verify=True, cert=None, proxies=None) -> requests.Response:
        try:
            body = collect_body(_body_pieces(request.body), self._limit)
        except BodyTooLarge as error:
            raise EgressRequestError(str(error), request=request) from None
        head_timeout, read_timeout = _timeouts(timeout)
        opened = self._client.open(request.method, request.url,
                                   caller_headers(request.headers.items()), body)
        timed = TimedStream(opened, self._watchdog, head_timeout, read_timeout)
        try:
            head = timed.read_head()
        except EgressError as error:
            if timed.timed_out:
                raise requests.exceptions.ReadTimeout(
                    "egress: no response head within the timeout", request=request) from None
            kind = _EXCEPTIONS.get(classify(error), EgressRequestError)
            raise keep_reason(kind(describe(error), request=request), error) from None
        try:
            phrase = http.HTTPStatus(head.status).phrase
        except ValueError:
            phrase = ""
        # Header values as http.client gives them: the bytes decoded as latin-1.
        headers = [(name.decode("latin-1"), value.decode("latin-1"))
                   for name, value in head.header_bytes()]
        raw = urllib3.HTTPResponse(
            body=_Body(timed, request.url), headers=HTTPHeaderDict(headers),
            status=head.status, reason=phrase, preload_content=False,
            decode_content=False, original_response=_Original(headers),
            request_method=request.method, request_url=request.url)
        return requests.adapters.HTTPAdapter.build_response(self, request, raw)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
