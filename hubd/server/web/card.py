"""A model card's Markdown as HTML that is safe to put in a page.

Cards come from whoever published the model: their HTML is kept only as far as an allow-list
lets it (nh3, the ammonia sanitizer): no script, style or iframe, no event handler, no
``javascript:`` or ``data:`` link, and every link marked ``rel="noopener noreferrer nofollow"``.
A relative image is one of the repo's files, served by this daemon from the verified store;
other images keep their ``src`` but the page's Content-Security-Policy loads none from elsewhere.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

import nh3
from markdown_it import MarkdownIt

FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*(\n|\Z)", re.DOTALL)
MAX_CARD = 512 * 1024  # characters rendered; the rest of a huge card is cut, and said so
TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s",
    "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
    "code": {"class"},
}
SCHEMES = {"http", "https", "mailto"}
NO_ALT = re.compile(r"<img(?![^>]*\salt=)")  # nh3's output: one tag, attributes quoted

_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")


def render(text: str, repo_id: str, commit: str) -> str:
    """The card's body (its YAML front matter left out) as sanitized HTML; relative image
    sources point at the revision's files (``/{repo}/resolve/{commit}/{path}``)."""

    def attribute(tag: str, name: str, value: str) -> str | None:
        if tag == "img" and name == "src":
            parts = urlsplit(value)
            if not parts.scheme and not parts.netloc and not value.startswith("/"):
                path = quote(parts.path.removeprefix("./"))
                return f"/{repo_id}/resolve/{commit}/{path}"
        return value

    body = FRONT_MATTER.sub("", text, count=1)
    cut = len(body) > MAX_CARD
    html = _markdown.render(body[:MAX_CARD])
    if cut:
        html += "<p><em>The card is longer than this page shows.</em></p>"
    clean = nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        attribute_filter=attribute,
    )
    return NO_ALT.sub('<img alt=""', clean)  # an image the card does not describe is decoration
