"""The static gallery page (``index.html``) of a batch: collages, counts, failures.

Links are relative object keys, so the page works from a local folder and from
an S3 static website alike.

Example::

    html = render_gallery(summary)   # a complete, self-contained HTML document
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from imgpipe.domain.result_rows import row_label

if TYPE_CHECKING:
    from jinja2 import Template

    from imgpipe.service.summary import BatchSummary

__all__ = ["prepare_gallery", "render_gallery"]


@lru_cache(maxsize=1)
def _template() -> Template:
    # Jinja2 is imported lazily so the Lambda worker path does not pay for it.
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("imgpipe", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("gallery.html")


def prepare_gallery() -> None:
    """Import and compile the template now (thread-safe), so rendering later is quick."""
    _template()


def render_gallery(summary: BatchSummary, *, base: str = "") -> str:
    """Render the gallery of one batch; every value is HTML-escaped.

    ``base``: the folder the page is stored in (the batch's output prefix); its
    links are relative to it.
    """
    creators = sorted(
        (_relative(c, base) for c in summary.creators),
        key=lambda c: (c["status"] == "failed", c["creator"].casefold()),
    )
    # The column header says what the numbers count: CSV lines, or a query's result rows.
    line_label = row_label(summary.source)
    return _template().render(summary=summary, creators=creators, line_label=line_label)


def _relative(creator: dict[str, Any], base: str) -> dict[str, Any]:
    """The creator with its collage and preview keys relative to ``base``."""
    if not base:
        return creator
    links = ("collage_key", "preview_key")
    return {
        **creator,
        **{name: str(creator[name]).removeprefix(base) for name in links if creator.get(name)},
    }
