"""Content coding of the /stocks stream: which coding a request accepts (Accept-Encoding,
RFC 9110 section 12.5.3), and the gzip compressor of a stream that asked for it.

The compressor is flushed (Z_SYNC_FLUSH) at the end of every write, so each event reaches
the client at once; it lives as long as the stream, so later writes refer back to earlier
ones (the same field names, symbols and id prefix), which is where the ratio comes from.
Its cost per stream is fixed by the window and memory level below; docs/benchmark.md has
the measurements they were chosen from. Brotli was measured too and left out: no better
on one-event writes, twice the CPU and ~270 KB per stream.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

Headers = tuple[tuple[bytes, bytes], ...]

# A 2 KB window and memLevel 2: zlib allocates 2**(WBITS + 2) + 2**(MEM_LEVEL + 9) bytes
# plus ~6 KB of state, ~16 KB per stream (deflate's default 15/8 costs ~262 KB, for
# 6 % fewer bytes on one-event writes of tick frames).
WINDOW_BITS = 11
MEM_LEVEL = 2
LEVEL = 6  # level 1 saves ~0.6 us per write and costs ~13 % more bytes
GZIP_WBITS = 16 + WINDOW_BITS  # 16+: a gzip header and trailer around the deflate data

_VARY = (b"vary", b"Accept-Encoding")


class Gzip:
    """One stream's compressor: allocated when its 200 answer begins, never for a stream
    that did not ask for gzip or was refused."""

    __slots__ = ("_deflate",)

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, GZIP_WBITS, MEM_LEVEL)

    def encode(self, body: bytes) -> bytes:
        """`body` compressed and flushed: the client can decode all of it now. (deflate
        keeps small writes to itself until the flush, so `compress` mostly returns b""
        and the concatenation is no copy.)"""
        deflate = self._deflate
        return deflate.compress(body) + deflate.flush(zlib.Z_SYNC_FLUSH)

    def finish(self, body: bytes) -> bytes:
        """The last bytes, then the gzip trailer: the body ends as a complete gzip member."""
        deflate = self._deflate
        return deflate.compress(body) + deflate.flush(zlib.Z_FINISH)


@dataclass(frozen=True, slots=True)
class Coding:
    """The coding of one answer and the headers that say so (shared constants)."""

    gzip: bool
    headers: Headers

    def compressor(self) -> Gzip | None:
        return Gzip() if self.gzip else None


UNCODED = Coding(gzip=False, headers=())  # compression off: the answer never varies
IDENTITY = Coding(gzip=False, headers=(_VARY,))
GZIP = Coding(gzip=True, headers=((b"content-encoding", b"gzip"), _VARY))


def negotiate(accept_encoding: str | None, *, enabled: bool) -> Coding:
    """GZIP when compression is `enabled` and the request accepts gzip at least as much as
    identity, else IDENTITY (or UNCODED when it is not enabled)."""
    if not enabled:
        return UNCODED
    return GZIP if accepts_gzip(accept_encoding or "") else IDENTITY


def accepts_gzip(accept_encoding: str) -> bool:
    """True when Accept-Encoding gives gzip (by name, as x-gzip, or as `*`) a q above 0 and
    not below an explicit `identity`'s. An unlisted identity is taken as the least
    preferred (browsers list only the codings they decode); an element with a malformed
    q-value is ignored."""
    qualities = _qualities(accept_encoding)
    gzip = qualities.get("gzip", qualities.get("x-gzip", qualities.get("*", 0.0)))
    return gzip > 0 and gzip >= qualities.get("identity", 0.0)


def _qualities(accept_encoding: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for element in accept_encoding.split(","):
        coding, _, params = element.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        quality = _quality(params)
        if quality is not None:
            out.setdefault(coding, quality)  # the first mention counts
    return out


def _quality(params: str) -> float | None:
    """The q parameter of one element (1 without one), None when it is malformed."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        value = value.strip()
        try:
            quality = float(value)
        except ValueError:
            return None
        # RFC 9110: 0 to 1 with at most three decimals; float() also takes "nan", "1e0"...
        if not (0.0 <= quality <= 1.0) or not value[:1].isdigit() or len(value) > 5:
            return None
        return quality
    return 1.0
