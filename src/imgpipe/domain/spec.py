"""A batch's resolved specification: how to render, which covers to collect, how to fetch.

Built once from the settings and the flags (``Settings.batch_spec``), stored with
the batch's plan, and used as it is by every worker of the batch. Each part has
its defaults here and nowhere else; the settings read the same values::

    >>> spec = BatchSpec.of(rows=3, timeout=5.0)
    >>> (spec.render.rows, spec.render.cols, spec.fetch.timeout, spec.images_per_collage)
    (3, 7, 5.0, 21)
    >>> BatchSpec.from_spec(spec.to_spec()) == spec
    True

Each numeric option's allowed values are declared once, in :data:`RANGES`; the
specs check them, and the settings, the CLI's options and the API's form fields
take their limits from the same entry::

    >>> str(RANGES["rows"]), RANGES["rows"].bounds()
    ('1 to 50', {'ge': 1, 'le': 50})
    >>> BatchSpec.of(rows=51)
    Traceback (most recent call last):
    ...
    imgpipe.errors.ConfigError: invalid option value: rows=51 (allowed: 1 to 50)
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypedDict

from imgpipe.domain.csv_text import check_encoding
from imgpipe.domain.keys import output_prefix
from imgpipe.errors import ConfigError

__all__ = [
    "CROP_MODES",
    "RANGES",
    "BatchSpec",
    "Bounds",
    "CollectSpec",
    "FetchPolicy",
    "IPNetwork",
    "Range",
    "RenderSpec",
    "check_crop",
    "parse_networks",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str | list[str] | tuple[Any, ...] | None) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1"`` -> networks; a clear ConfigError names a bad entry."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    networks: list[IPNetwork] = []
    for raw in items:
        text = str(raw).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ConfigError(f"allowed private network {text!r} is not a CIDR: {exc}") from exc
    return tuple(networks)


class Bounds(TypedDict, total=False):
    """A range as pydantic's and FastAPI's keyword arguments (``Field(**bounds)``)."""

    ge: float
    le: float


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric option: ``low`` to ``high``, both included (None: no
    bound). Closed bounds only, because that is what a CLI option's ``min``/``max`` take."""

    low: float | None = None
    high: float | None = None

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def bounds(self) -> Bounds:
        bounds = Bounds()
        if self.low is not None:
            bounds["ge"] = self.low
        if self.high is not None:
            bounds["le"] = self.high
        return bounds

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low} to {self.high}"
        if self.low is not None:
            return f"at least {self.low}"
        return "any" if self.high is None else f"at most {self.high}"


# Every bounded option, by its flat name. The grid's 50 x 50 and 2500 covers are
# the limits the HTTP API has always had; the CLI and the settings now share them.
RANGES: dict[str, Range] = {
    "rows": Range(1, 50),
    "cols": Range(1, 50),
    "cell_size": Range(8, 2000),
    "quality": Range(1, 100),
    "max_images": Range(1, 2500),
    "min_images": Range(1, 2500),
    "min_image_size": Range(0),
    "near_duplicates": Range(0, 64),  # bits of a 64-bit hash
    "max_pixels": Range(1),
    "timeout": Range(0.1),  # seconds; a shorter attempt can only fail
    "retries": Range(0),
    "max_bytes": Range(1),
    "concurrency": Range(1),
    "per_host_concurrency": Range(1),
    "max_workers": Range(1),
    "memory_warning": Range(0, 100),
    "memory_critical": Range(0, 100),
}


# Where a cover's square cell comes from: its centre, or where its faces (else what
# stands out) are (imaging/smartcrop.py). "smart" is the default since it was measured
# (faces framed: 58 of 60 against 21 for "center"; render time x1.2): README, "Smart crop".
CROP_MODES = ("center", "smart")


def check_crop(value: object) -> str:
    """``value`` if it is a crop mode, else a ConfigError naming the allowed ones.

    >>> check_crop("smart")
    'smart'
    >>> check_crop("faces")
    Traceback (most recent call last):
    ...
    imgpipe.errors.ConfigError: invalid option value: crop='faces' (allowed: center, smart)
    """
    if value not in CROP_MODES:
        raise ConfigError(
            f"invalid option value: crop={value!r} (allowed: {', '.join(CROP_MODES)})"
        )
    return str(value)


def _check(part: RenderSpec | CollectSpec | FetchPolicy | BatchSpec) -> None:
    """Raise a ConfigError naming every field of ``part`` outside its range in RANGES."""
    bad = [
        f"{f.name}={getattr(part, f.name)!r} (allowed: {RANGES[f.name]})"
        for f in fields(part)
        if f.name in RANGES and getattr(part, f.name) not in RANGES[f.name]
    ]
    if bad:
        raise ConfigError(f"invalid option value: {', '.join(bad)}")


@dataclass(frozen=True)
class RenderSpec:
    """The collage's look: a ``rows`` x ``cols`` grid of ``cell_size`` px, JPEG ``quality``,
    each cell the ``crop`` (one of :data:`CROP_MODES`) of a cover."""

    rows: int = 5
    cols: int = 7
    cell_size: int = 200  # px of one square cell (--cell, IMGPIPE_CELL_SIZE)
    quality: int = 95
    crop: str = "smart"  # --crop, IMGPIPE_CROP

    def __post_init__(self) -> None:
        _check(self)
        check_crop(self.crop)


@dataclass(frozen=True)
class CollectSpec:
    """Which covers make a collage, and when a creator is rendered at all."""

    max_images: int = 35
    min_images: int = 1
    min_image_size: int = 50  # px; smaller covers are too_small
    max_pixels: int = 64_000_000  # refused before decoding
    deduplicate: bool = True  # equal bytes count once
    # Covers whose 64-bit perceptual hashes differ in at most this many bits (and whose
    # mean colours are close) count once too; 0 turns it off. Measured on 30 generated
    # covers: JPEG q60 <= 4 bits, 90 % resize <= 3, brightness +10 <= 3, a 5 % crop 2-9
    # (median 5); different pictures >= 19, other framings of one scene >= 14. Covers
    # made from one template (same backdrop, a small subject) sit at 6-10: a higher
    # default would catch every crop but merge such covers, and a lost cover is worse.
    near_duplicates: int = 6
    force: bool = False  # render even when the fingerprint is unchanged
    collision_check: bool = True  # a collage never overwrites an object it did not write

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching: time, retries, size, redirects, concurrency, networks."""

    timeout: float = 30.0  # seconds per request: connect + headers + whole body
    retries: int = 3  # retries after the first attempt
    backoff_base: float = 0.5
    backoff_max: float = 20.0  # also caps Retry-After
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 8  # requests in flight, all hosts together
    per_host_concurrency: int = 8
    allowed_networks: tuple[IPNetwork, ...] = ()  # private ranges that may be fetched
    allow_local_files: bool = True
    user_agent: str = ""  # "": imgpipe's own (imgpipe.version.user_agent)

    def __post_init__(self) -> None:
        _check(self)


_PARTS = {"render": RenderSpec, "collect": CollectSpec, "fetch": FetchPolicy}
# Every flat option name (a flag, a processing_config key) -> the part that holds it.
_PART_OF = {f.name: part for part, kind in _PARTS.items() for f in fields(kind)}


@dataclass(frozen=True)
class BatchSpec:
    """Everything one batch needs to know, in three small parts and a few run limits."""

    render: RenderSpec = field(default_factory=RenderSpec)
    collect: CollectSpec = field(default_factory=CollectSpec)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    max_workers: int = 8  # creators in flight (bounds memory)
    creator_column: str | None = None
    url_column: str | None = None
    encoding: str | None = None  # the CSV's text encoding; None: detected (domain/csv_text.py)
    memory_warning: float = 80.0
    memory_critical: float = 90.0
    record_ttl_days: int = 30
    # Where the batch's collages and results go in the output store (a csv_s3
    # message's output_prefix): "" or a folder ending with "/".
    output_prefix: str = ""

    def __post_init__(self) -> None:
        _check(self)
        try:
            checked = output_prefix(self.output_prefix)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if checked != self.output_prefix:
            raise ConfigError(f"output prefix {self.output_prefix!r}: must end with '/'")
        if self.encoding is not None:
            object.__setattr__(self, "encoding", check_encoding(self.encoding))

    @classmethod
    def of(cls, **flat: Any) -> BatchSpec:
        """A spec from flat option names (``rows=3``, ``timeout=5``...), defaults elsewhere."""
        return cls().with_overrides(**flat)

    @property
    def images_per_collage(self) -> int:
        """At most ``max_images`` and never more than the grid holds."""
        return min(self.collect.max_images, self.render.rows * self.render.cols)

    def with_overrides(self, **flat: Any) -> BatchSpec:
        """Apply the flat overrides that were actually given (not None)."""
        given = {k: v for k, v in flat.items() if v is not None}
        if "allowed_networks" in given and not isinstance(given["allowed_networks"], tuple):
            given["allowed_networks"] = parse_networks(given["allowed_networks"])
        unknown = sorted(set(given) - set(_PART_OF) - {f.name for f in fields(self)} - {*_PARTS})
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        parts = {
            part: replace(getattr(self, part), **{k: v for k, v in given.items() if k in names})
            for part, names in _names_by_part().items()
            if any(k in names for k in given)
        }
        own = {k: v for k, v in given.items() if k not in _PART_OF}
        return replace(self, **own, **parts)

    def flat(self) -> dict[str, Any]:
        """Every option under its flat name (what snapshots and identities list)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _PARTS}
        for part in _PARTS:
            values.update(asdict(getattr(self, part)))
        values["allowed_networks"] = tuple(self.fetch.allowed_networks)
        return values

    def safe_mode(self) -> BatchSpec:
        """The original system's fallback under memory pressure."""
        return self.with_overrides(
            max_workers=max(1, self.max_workers // 2),
            concurrency=max(1, self.fetch.concurrency // 2),
            quality=min(self.render.quality, 75),
            max_images=min(self.collect.max_images, 20),
        )

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready: what a planner stores so every worker renders with exactly this."""
        data = asdict(self)
        data["fetch"]["allowed_networks"] = [str(n) for n in self.fetch.allowed_networks]
        return data

    @classmethod
    def from_spec(cls, data: dict[str, Any], **trusted: Any) -> BatchSpec:
        """The spec a planner stored; ``trusted`` flat values (the worker's own network
        allowances) replace what the plan says; unknown keys are ignored."""
        own = {f.name for f in fields(cls)} - set(_PARTS)
        flat = {k: v for k, v in data.items() if k in own}
        for part, names in _names_by_part().items():
            stored = data.get(part) or {}
            flat.update({k: v for k, v in stored.items() if k in names})
        flat.update(trusted)
        return cls.of(**flat)


def _names_by_part() -> dict[str, set[str]]:
    return {part: {f.name for f in fields(kind)} for part, kind in _PARTS.items()}
