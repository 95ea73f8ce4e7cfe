"""A CSV's bytes -> its lines of text, in whatever encoding the spreadsheet saved it.

Excel saves "CSV" in the machine's ANSI code page (cp1252 or Latin-1 in the West),
"CSV UTF-8" with a byte-order mark, and "Unicode text" as UTF-16 with one. The
encoding is, in this order:

1. the one named (``--encoding``, the API's ``encoding`` form field);
2. the one a byte-order mark announces (UTF-8, UTF-16, UTF-32);
3. UTF-8, when the first megabyte is strict UTF-8 (the fast, usual case);
4. what charset-normalizer makes of the first megabyte.

A byte further on that does not decode is an error naming its line::

    >>> text = csv_text(io.BytesIO("creator,url\\nZoë,a.jpg\\n".encode("cp1252")))
    >>> (text.encoding, list(text))
    ('cp1252', ['creator,url\\n', 'Zoë,a.jpg\\n'])
    >>> data = io.BytesIO(b"creator,url\\nAnn,a.jpg\\nBo\\xff,b.jpg\\n")
    >>> list(csv_text(data, encoding="utf-8"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    imgpipe.errors.ManifestError: line 3: byte 0xff is not utf-8 text (as named; ...)

Lines keep their endings (``\\n``, ``\\r\\n`` or a lone ``\\r``), as from a file
opened with ``newline=""``, which is what the csv module wants.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import BinaryIO

from imgpipe.errors import ConfigError, InputError, ManifestError

__all__ = ["SNIFF_BYTES", "CsvText", "check_encoding", "csv_text"]

# Detection reads this much; charset-normalizer is sure of itself well before.
SNIFF_BYTES = 1 << 20
_CLOSE = 0.1  # "about as well" in charset-normalizer's chaos and coherence (0 to 1)
_BOMS = (  # UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def check_encoding(name: str) -> str:
    """A codec name Python knows, normalised (``"UTF8"`` -> ``"utf-8"``), or ConfigError."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ConfigError(
            f"unknown text encoding {name!r} (try utf-8, cp1252, latin-1, utf-16)"
        ) from None


class CsvText:
    """The lines of a binary stream, decoded; ``encoding`` and ``how`` it was chosen are
    known as soon as it is made (the first megabyte is read then)."""

    def __init__(self, raw: BinaryIO, encoding: str | None = None) -> None:
        self._raw = raw
        head = raw.read(SNIFF_BYTES)
        self.encoding, self.how = _choose(head, encoding, complete=len(head) < SNIFF_BYTES)
        self._lines = self._decode(head)

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def _decode(self, data: bytes) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder(self.encoding)("strict")
        done = 0  # lines yielded so far
        carry: list[str] = []  # a line not yet ended, perhaps by a "\n" still to come
        while True:
            final = not data
            state = decoder.getstate()
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError as exc:
                raise self._error(exc, data, state, done, "".join(carry)) from None
            if carry:
                text = "".join(carry) + text
                carry = []
            lines = io.StringIO(text, newline="").readlines()
            # The last line waits for more unless it ends in "\n" (a "\r" may be half of
            # a "\r\n"); at the end of the data everything goes.
            if lines and not final and not lines[-1].endswith("\n"):
                carry.append(lines.pop())
            done += len(lines)
            yield from lines
            if final:
                return
            data = self._raw.read(SNIFF_BYTES)

    def _error(
        self,
        exc: UnicodeDecodeError,
        data: bytes,
        state: tuple[bytes, int],
        done: int,
        carry: str,
    ) -> ManifestError:
        # exc.start counts the bytes the decoder held back from the last block too.
        held = len(state[0])
        bad = (state[0] + data)[exc.start : exc.end]
        decoder = codecs.getincrementaldecoder(self.encoding)("strict")
        decoder.setstate(state)
        before = carry + decoder.decode(data[: max(0, exc.start - held)], False)
        ended = sum(line[-1:] in "\r\n" for line in io.StringIO(before, newline=""))
        shown = " ".join(f"0x{b:02x}" for b in bad[:4])
        codec = self.encoding.removesuffix("-sig")  # utf-8-sig: "utf-8" to a person
        return ManifestError(
            f"line {done + ended + 1}: byte {shown} is not {codec} text"
            f" ({self.how}; name the file's encoding with --encoding)"
        )


def csv_text(raw: BinaryIO, encoding: str | None = None) -> CsvText:
    """Lines of text from ``raw`` (read once, a megabyte at a time); see the module."""
    return CsvText(raw, encoding)


def _choose(head: bytes, named: str | None, *, complete: bool) -> tuple[str, str]:
    """The codec for a file beginning with ``head``, and how it was chosen."""
    if named is not None:
        codec = check_encoding(named)
        # "utf-8" named for a file saved as "CSV UTF-8": the mark is not a character.
        return ("utf-8-sig" if codec == "utf-8" else codec), "as named"
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec, "from its byte-order mark"
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, complete)
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8", "the first megabyte was utf-8"
    return _detect(head), "detected from the first megabyte"


def _detect(head: bytes) -> str:
    """charset-normalizer's pick, but Excel's Western code page when that reads as well.

    A few accented names are little to go on: "Zoë Müller" in cp1252 reads, to
    charset-normalizer, a shade better as cp775 (Baltic), "Zoļ M³ller". Excel saves
    "CSV" in the ANSI code page, cp1252 in the West, so cp1252 wins when it reads
    about as well as the best guess; a Polish cp1250 file, where cp1252 reads far
    worse ("£ukasz"), stays cp1250.
    """
    from charset_normalizer import from_bytes  # only for files that are not UTF-8

    matches = from_bytes(head)
    best = matches.best()
    if best is None:
        raise InputError(
            "neither utf-8 nor any text encoding charset-normalizer knows; "
            "name the file's encoding with --encoding"
        )
    for match in matches:
        if (
            "cp1252" in match.could_be_from_charset
            and match.chaos <= best.chaos + _CLOSE
            and match.coherence >= best.coherence - _CLOSE
        ):
            return "cp1252"
    return check_encoding(best.encoding)
