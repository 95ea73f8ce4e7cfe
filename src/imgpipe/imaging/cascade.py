"""OpenCV's frontal-face Haar cascade, run at the sizes a caller asks for.

:mod:`.face_detect` decides where on a cover to look; this module holds how one
look is made: loading the cascade from the ``opencv-python-headless`` wheel (only
when a smart crop first runs, never at import), one classifier per thread, and
scanning a range of face sizes on a copy resized so that the smallest face sought
is just above the cascade's 24 px window, in bands of at most 2x (see
:func:`cascade_at` for why).

    faces = cascade_at(gray, 30, 120, thread_cascade(), cv2)   # [Face(box, votes), ...]
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = ["FACE_PX", "Box", "Face", "cascade_at", "load_cascade", "thread_cascade"]

Box = tuple[int, int, int, int]  # left, top, right, bottom


class Face(NamedTuple):
    """A face's box and the cascade's votes for it (overlapping hits: a confidence)."""

    box: Box
    votes: int

    def moved(self, left: int, top: int) -> Face:
        a, b, c, d = self.box
        return Face((a + left, b + top, c + left, d + top), self.votes)


_SCALE_STEP = 1.15  # 1.2 missed 3 more of 60 small faces
_GROUP_EPS = 0.2  # detectMultiScale's own grouping of raw hits
FACE_PX = 26  # px: the smallest face sought is resized to this (the cascade's window is 24)
_MIN_NEIGHBOURS = 3


@lru_cache(maxsize=1)
def load_cascade() -> Any:
    """OpenCV's frontal-face cascade, or None without OpenCV (or its data files)."""
    try:
        import cv2
        from cv2.data import haarcascades  # the cascades' folder inside the wheel
    except ImportError:
        return None
    cv2.setNumThreads(1)  # cells are decoded in parallel already; threads only contend
    cascade = cv2.CascadeClassifier(haarcascades + _CASCADE_FILE)
    return None if cascade.empty() else cascade


_CASCADE_FILE = "haarcascade_frontalface_default.xml"
_PER_THREAD = threading.local()


def thread_cascade() -> Any:
    """This thread's own classifier. Cells are decoded on a thread pool, and
    detectMultiScale on one classifier from two threads at once returns wrong boxes
    (seen: a face found on one run and missed on the next)."""
    cascade = getattr(_PER_THREAD, "cascade", None)
    if cascade is None:
        import cv2
        from cv2.data import haarcascades

        cascade = _PER_THREAD.cascade = cv2.CascadeClassifier(haarcascades + _CASCADE_FILE)
    return cascade


def cascade_at(
    gray: Any,
    smallest: float,
    largest: float,
    cascade: Any,
    cv2: Any,
    step: float = 0.0,
    large_first: bool = False,
    band: float = 0.0,
) -> list[Face]:
    """Faces ``smallest`` to ``largest`` px wide in ``gray``, resized so that the smallest
    is ``FACE_PX`` (above the cascade's 24 px window, and no bigger than needed).

    OpenCV slides its window 1 px at a time (not 2) once the window is over twice its
    own size: those sizes cost 2-3x the small ones (measured on a 216x384 draft: 6.8
    ms for the 50 px window, 2.6 ms for the 41 px one). So the range is scanned in
    bands of at most 2x, each on a copy halved again, and the raw hits of all bands
    are grouped as ``detectMultiScale`` groups them (a face at a band's edge keeps
    the votes of both). With ``large_first`` the largest band goes first and the
    scan stops at the first band whose hits make a face: the small sizes, on the
    largest copy, cost most.
    """
    step = step or _SCALE_STEP
    if not band or largest <= smallest * band:
        return _scan_band(gray, smallest, largest, step, cascade, cv2)
    bands = []
    while smallest < largest:
        bands.append((smallest, min(largest, smallest * band)))
        smallest *= band
    if large_first:
        bands.reverse()
    hits: list[list[int]] = []
    faces: Any = ()
    votes: Any = ()
    for low, high in bands:
        hits += _raw_hits(gray, low, high, step, cascade, cv2)
        faces, votes = cv2.groupRectangles(hits, _MIN_NEIGHBOURS, _GROUP_EPS)
        if large_first and len(faces):
            break
    return [
        Face((int(x), int(y), int(x + w), int(y + h)), int(count))
        for (x, y, w, h), count in zip(faces, votes, strict=True)
    ]


def _scan_band(
    gray: Any, smallest: float, largest: float, step: float, cascade: Any, cv2: Any
) -> list[Face]:
    scale = FACE_PX / smallest
    resized = _resized(gray, scale, cv2)
    if resized is None:
        return []
    top_size = max(FACE_PX, round(largest * scale))
    # detectMultiScale2 also says how many overlapping hits made each face: a
    # confidence, so that a real face outweighs a look-alike in the backdrop.
    faces, votes = cascade.detectMultiScale2(
        resized,
        scaleFactor=step,
        minNeighbors=_MIN_NEIGHBOURS,
        minSize=(FACE_PX, FACE_PX),
        maxSize=(top_size, top_size),
    )
    found = []
    for (x, y, w, h), count in zip(faces, votes, strict=True):
        box = (round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale))
        found.append(Face(box, int(count)))
    return found


def _resized(gray: Any, scale: float, cv2: Any) -> Any:
    """``gray`` resized by ``scale``, or None when a face's window no longer fits."""
    height, width = gray.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size[0] < FACE_PX or size[1] < FACE_PX:
        return None
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _raw_hits(
    gray: Any, smallest: float, largest: float, step: float, cascade: Any, cv2: Any
) -> list[list[int]]:
    """Every window the cascade accepts for faces ``smallest`` to ``largest`` px wide,
    ungrouped, in ``gray``'s pixels."""
    scale = FACE_PX / smallest
    resized = _resized(gray, scale, cv2)
    if resized is None:
        return []
    top_size = max(FACE_PX, round(largest * scale))
    found = cascade.detectMultiScale(
        resized,
        scaleFactor=step,
        minNeighbors=0,
        minSize=(FACE_PX, FACE_PX),
        maxSize=(top_size, top_size),
    )
    return [
        [round(x / scale), round(y / scale), round(w / scale), round(h / scale)]
        for x, y, w, h in found
    ]
