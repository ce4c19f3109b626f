"""The files every trainwell page is made of: ``static/report.css``, ``static/report.js`` and
the ``static/page.html`` template, read through ``importlib.resources`` (package data: an
installed wheel ships them) and inlined into each page, so a page opens offline with
nothing fetched at view time."""

from __future__ import annotations

import functools
from html import escape
from importlib.resources import files
from string import Template


@functools.cache
def asset(name: str) -> str:
    """The text of ``static/<name>``, read once per process. A stylesheet or script is
    inlined into a ``<style>`` or ``<script>`` element, so it may not hold a closing tag."""
    text = files("trainwell.report").joinpath("static", name).read_text(encoding="utf-8")
    inlined = name.endswith((".css", ".js"))
    if inlined and ("</script" in text.lower() or "</style" in text.lower()):  # would end the element early
        raise ValueError(f"static/{name} holds a closing </script> or </style> tag and cannot be inlined")
    return text


def stylesheet() -> str:
    """The stylesheet shared by the run, study and bench pages."""
    return asset("report.css")


def script() -> str:
    """The run report's script: buttons, slider and crosshair over the charts drawn in Python."""
    return asset("report.js")


def html_page(title: str, body: str, *, style: str = "", scripts: str = "") -> str:
    """A whole self-contained page: the shared stylesheet plus ``style``, the ``body`` markup,
    then ``scripts`` (whole ``<script>`` elements). ``title`` is text and is escaped here."""
    return Template(asset("page.html")).substitute(
        title=escape(title), style=stylesheet() + style, body=body, scripts=scripts)
