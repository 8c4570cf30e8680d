"""HTTP/1.1 response, chunked body and SSE block parsing for the load generator: pure bytes."""

from __future__ import annotations

import zlib
from typing import Any

HEAD_LIMIT = 64 * 1024


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response the loader understands."""


class ResponseDecoder:
    """Fed raw socket bytes; returns the complete SSE blocks of the response body.

    Minimal on purpose: one response per connection, `Transfer-Encoding: chunked` or a body
    that runs until the connection closes, and events separated by a blank line (`\\n\\n`),
    as the gateway writes them.
    """

    __slots__ = (
        "_buf",
        "_inflate",
        "_remaining",
        "_skip",
        "_sse",
        "body_bytes",
        "chunked",
        "ended",
        "retry_after",
        "status",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._remaining = 0  # bytes of chunk data still to come
        self._skip = 0  # bytes of the CRLF after a chunk still to skip
        self._sse = b""  # an incomplete SSE block
        self.status = 0  # 0 until the head has arrived
        self.chunked = False
        self.ended = False  # the terminating zero-length chunk arrived
        self.body_bytes = 0  # of the body as sent (gzipped or not)
        self._inflate: Any = None  # a zlib decompressor when the body is gzipped
        self.retry_after: float | None = None  # a refusal's Retry-After, in seconds

    def feed(self, data: bytes) -> list[bytes]:
        if not self.status:
            data = self._head(data)
            if not data:
                return []
        if self.ended:
            return []  # the trailer after the last chunk
        body = self._dechunk(data) if self.chunked else data
        if not body:
            return []
        self.body_bytes += len(body)
        if self._inflate is not None:  # each write of the gateway's decodes whole
            body = self._inflate.decompress(body)
        if not self._sse and body.endswith(b"\n\n"):  # the usual case: whole events
            return body[:-2].split(b"\n\n")
        text = self._sse + body if self._sse else body
        cut = text.rfind(b"\n\n")
        if cut < 0:
            self._sse = text
            return []
        self._sse = text[cut + 2 :]
        return text[:cut].split(b"\n\n")

    def _head(self, data: bytes) -> bytes:
        """Take the response head once it is complete; the body bytes after it."""
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > HEAD_LIMIT:
                raise ProtocolError("response head too long")
            return b""
        head = bytes(self._buf[:end])
        rest = bytes(self._buf[end + 4 :])
        self._buf = bytearray()
        if not head.startswith(b"HTTP/1.") or len(head) < 12:
            raise ProtocolError(f"not an HTTP/1.x response: {head[:40]!r}")
        self.status = int(head[9:12])
        self.chunked = b"\r\ntransfer-encoding: chunked" in head.lower()
        if b"\r\ncontent-encoding: gzip" in head.lower():
            self._inflate = zlib.decompressobj(wbits=31)
        if self.status != 200:
            self.retry_after = retry_after(head)
        return rest

    def _dechunk(self, data: bytes) -> bytes:
        if not self._buf and not self._remaining and not self._skip:
            # Fastest path: the read is one whole chunk (one write of the server's).
            line_end = data.find(b"\r\n")
            try:
                length = int(data[:line_end], 16) if 0 < line_end < 9 else 0
            except ValueError:  # an extension, or not a size: the paths below judge it
                length = 0
            if length > 0 and line_end + length + 4 == len(data):
                return data[line_end + 2 : -2]
            # Fast path: the read holds whole chunks.
            pos = 0
            parts: list[bytes] = []
            size = len(data)
            while pos < size:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    break
                try:
                    length = int(data[pos:line_end], 16)
                except ValueError:
                    break  # chunk extensions: the general path copes
                start = line_end + 2
                end = start + length
                if not length or end + 2 > size:
                    break
                parts.append(data[start:end])
                pos = end + 2
            if pos == size:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            return b"".join(parts) + self._dechunk_slow(data[pos:])
        return self._dechunk_slow(data)

    def _dechunk_slow(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out: list[bytes | bytearray] = []
        pos = 0
        size = len(buf)
        while pos < size:
            if self._remaining:
                take = min(self._remaining, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._skip = 2
            elif self._skip:
                skip = min(self._skip, size - pos)
                pos += skip
                self._skip -= skip
            else:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    break
                try:
                    length = int(buf[pos:line_end].split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {bytes(buf[pos:line_end])!r}") from None
                pos = line_end + 2
                if not length:
                    self.ended = True
                    pos = size
                    break
                self._remaining = length
        del buf[:pos]
        return b"".join(out)


def retry_after(head: bytes) -> float | None:
    """A response head's `Retry-After` in seconds (delay-seconds form; None: absent or a date)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            try:
                return max(0.0, float(value.strip()))
            except ValueError:
                return None
    return None


def event_key(block: bytes) -> int:
    """The number after the last '-' of an `id: ` block's id: the stream sequence for the
    gateway, the publisher's counter for the naive baseline."""
    line_end = block.find(b"\n")
    return int(block[block.rfind(b"-", 0, line_end) + 1 : line_end])


TIMESTAMP_FIELD = b'"timestamp":"'
