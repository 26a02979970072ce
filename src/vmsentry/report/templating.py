"""The one jinja2 environment of the report pages (``templates/*.j2``, package data).

Every name on a page comes from a VM definition, a file name or traffic, so it is hostile until shown
otherwise: autoescape is on for every template, and the ``p`` filter passes a value through ``printable``
first (control characters become visible escapes, so a name cannot break a line or a table). The pages carry
no script: their Content-Security-Policy (``CSP``) refuses any, so an injected one could not run even if it
got past the escaping.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from vmsentry.model.text import printable

# no script, no fetch: styles only from the page itself, images only inline (data:)
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _p(value: object) -> str:
    return printable("" if value is None else str(value))


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("vmsentry.report", "templates"),
        autoescape=True,  # every template, whatever its name ends with
        undefined=StrictUndefined,  # a misspelt field is an error in the tests, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["p"] = _p
    env.globals["CSP"] = CSP
    return env


def render_page(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
