"""Reading an access log: plain or gzip, as text, one bounded line at a time.

Other compressions are known by their first bytes and refused with the
command that decompresses them.
"""

import gzip
import io
import shlex
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from scorer.errors import ScorerError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# The longest line that is parsed. Apache and nginx refuse a request line or
# a header over 8 KiB by default (LimitRequestLine, LimitRequestFieldSize,
# large_client_header_buffers), so a combined line stays under about 25 KiB
# unless most of its bytes were escaped; a longer one is damage or an attack.
# Matching the line pattern costs some 200 bytes of memory per character, so
# a longer line is refused before it is matched, and never read whole.
MAX_LINE_CHARS = 64 * 1024

# RFC 1952, section 2.3.1: every gzip member starts with the bytes ID1, ID2.
GZIP_MAGIC = b"\x1f\x8b"
# Compressions that are not read, by their magic bytes: bzip2 ("BZh" and the
# block size), xz (its file format specification, section 2.1.1.1) and
# zstd (RFC 8878, section 3.1.1); the tool that decompresses each.
OTHER_COMPRESSIONS = {
    **{f"BZh{size}".encode(): ("bzip2", "bzip2 -dc") for size in range(1, 10)},
    b"\xfd7zXZ\x00": ("xz", "xz -dc"),
    b"\x28\xb5\x2f\xfd": ("zstd", "zstd -dc"),
}
MAGIC_BYTES = max(len(magic) for magic in (GZIP_MAGIC, *OTHER_COMPRESSIONS))
# Editors on Windows open a UTF-8 file with it; it is no part of the first line.
BYTE_ORDER_MARK = "\ufeff"


class UnreadableLog(ScorerError):
    """A log's data is damaged, cut short or compressed in a way not read.

    The message names the file.
    """


@contextmanager
def opened(name: str) -> Iterator[io.BufferedReader]:
    """The file `name` as bytes, or stdin for ``-``."""
    if name == "-":
        # Bytes, to look at the first few; fd 0 stays open for the process.
        with open(sys.stdin.fileno(), "rb", closefd=False) as stdin:
            yield stdin
        return
    with Path(name).open("rb") as log:
        yield log


def decoded_lines(
    name: str, data: "io.BufferedReader[_Replayed] | gzip.GzipFile"
) -> Iterator[str]:
    """The text lines of `data`; damaged gzip data raises `UnreadableLog`."""
    # Servers escape unusual bytes, but a damaged file must not stop the run.
    # LF, CR LF and a lone CR each end a line: servers escape a CR inside a
    # request, so a CR in the file ends a line a converter wrote, and a file
    # with CR endings alone would otherwise be a single line.
    text = io.TextIOWrapper(data, encoding="utf-8", errors="replace", newline=None)
    lines_read = 0
    try:
        for line in _bounded_lines(text):
            yield line
            lines_read += 1
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        where = f"after line {lines_read}" if lines_read else "before the first line"
        message = f"{name}: the gzip data is damaged or cut short {where}"
        raise UnreadableLog(message) from exc


def uncompressed(
    name: str, log: io.BufferedReader
) -> "io.BufferedReader[_Replayed] | gzip.GzipFile":
    """`log` decompressed if it is gzip; other compressions are refused."""
    head = log.read(MAGIC_BYTES)
    other = [
        kind for magic, kind in OTHER_COMPRESSIONS.items() if head.startswith(magic)
    ]
    if other:
        compression, tool = other[0]
        # The command to run, ready to paste (stdin has no name to give).
        source = "FILE" if name == "<stdin>" else shlex.quote(name)
        raise UnreadableLog(
            f"{name}: the data is {compression}-compressed; decompress it first: "
            f"{tool} {source} | scorer import-access-log -"
        )

    whole = io.BufferedReader(_Replayed(head, log))
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=whole, mode="rb")
    return whole


class _Replayed(io.RawIOBase):
    """A stream whose first bytes were read to look at them, whole again."""

    def __init__(self, head: bytes, rest: io.BufferedReader) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer") -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(view), len(self._head))
            view[:size] = self._head[:size]
            self._head = self._head[size:]
            return size

        # read1 returns what a pipe holds now, so lines piped in one at a
        # time (tail -f) are imported as they come, not by the buffer-full.
        data = self._rest.read1(len(view))
        view[: len(data)] = data
        return len(data)


def _bounded_lines(log: TextIO) -> Iterator[str]:
    """The lines of `log`, each cut after MAX_LINE_CHARS + 1 characters.

    A cut line is still one character too long to be parsed; the rest of it
    is read in pieces and thrown away, so memory stays bounded.
    """
    while line := log.readline(MAX_LINE_CHARS + 1):
        yield line
        cut = len(line) > MAX_LINE_CHARS and not line.endswith("\n")
        if cut:
            _skip_rest_of_line(log)


def _skip_rest_of_line(log: TextIO) -> None:
    while piece := log.readline(MAX_LINE_CHARS):
        if piece.endswith("\n"):
            return
