"""The HTTP server's limits on what a client may send before the app sees the request.

uvicorn's httptools protocol accepts a request line and headers of any size (h11's has a 16 KiB
limit; httptools has none), and every request path is logged and so redacted. This protocol refuses a
request line over MAX_REQUEST_LINE bytes with 414 and a header block over MAX_HEADER_BYTES with 431,
then closes the connection, before the request reaches the app.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

#: Bytes of the request target (path and query). nginx's default header buffer is 8 KiB as well.
MAX_REQUEST_LINE = 8 * 1024
#: Bytes of all header names and values together (a JWT is well under 1 KiB).
MAX_HEADER_BYTES = 16 * 1024
#: Bytes of one WebSocket message from a client.
WS_MAX_MESSAGE_BYTES = 4096
#: Bytes received before the end of the headers: httptools buffers a header until it is complete, so
#: one endless header would grow in memory before on_header could count it.
_MAX_HEAD_BYTES = MAX_REQUEST_LINE + MAX_HEADER_BYTES + 4096


class _HeadTooLarge(Exception):
    """Raised in a parser callback: httptools stops parsing and data_received answers."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request line and the header block."""

    _refusal: tuple[int, str] | None = None
    _header_bytes = 0
    _head_received = 0
    _in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_received += len(data)
        super().data_received(data)
        # Checked after parsing: the same read may hold the end of the head and a body.
        if self._in_head and self._head_received > _MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse(431, f"The request head is longer than {_MAX_HEAD_BYTES} bytes.")

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_received = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._refusal = None

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_REQUEST_LINE:
            self._refusal = (414, f"The request target is longer than {MAX_REQUEST_LINE} bytes.")
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refusal = (431, f"The request headers are longer than {MAX_HEADER_BYTES} bytes in total.")
            raise _HeadTooLarge
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        # httptools turns an exception in a callback into a parser error, answered here with 400.
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, detail = self._refusal
        self._refusal = None
        self._refuse(status, detail)

    def _refuse(self, status: int, detail: str) -> None:
        self.logger.info("Refused a request head: %s", detail)
        body = detail.encode("ascii")
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
