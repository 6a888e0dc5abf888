"""connexion's response serializer, writing with orjson; and a handler's result as a response.

connexion's FlaskApp serializes a handler's dict with Flask's JSON provider (the stdlib
encoder, keys sorted, indent 2, ASCII): ~10x the cost of orjson, paid by every JSON
answer. This one writes the same bytes with orjson, and hands whatever it cannot write
identically to Flask's provider: non-ASCII text (Flask escapes it), numbers with a
fraction or exponent (the two encoders spell some differently), dates, dataclasses and
any other type Flask converts its own way.
"""
from __future__ import annotations

import re

import flask
import orjson
from connexion.jsonifier import Jsonifier

_OPTIONS = (orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)
# A number with a fraction or an exponent: a value after ": " or at a line's (or the
# text's) start, as indented output places them. (A string holding such text only sends
# that response the slow way.)
_FLOATY = re.compile(rb"(?:: |\n *|^)-?[0-9]+[.eE]")


def _refuse(value):
    raise TypeError


class FastJsonifier(Jsonifier):
    def __init__(self):
        super().__init__(flask.json, indent=2)

    def dumps(self, data, **kwargs):
        if not kwargs:
            try:
                out = orjson.dumps(data, default=_refuse, option=_OPTIONS)
            except TypeError:
                out = None
            if out is not None and out.isascii() and not _FLOATY.search(out):
                return out.decode("ascii") + "\n"
        return super().dumps(data, **kwargs)


JSONIFIER = FastJsonifier()


def as_response(result) -> flask.Response:
    """A handler's result as the response connexion makes of it, without Flask's request
    or app context: a Response as it is; a JSON value, or (value, status[, headers]),
    written by the jsonifier as application/json."""
    if isinstance(result, flask.Response):
        return result
    status, headers = 200, None
    if isinstance(result, tuple):
        result, status, *rest = result
        headers = rest[0] if rest else None
    return flask.Response(JSONIFIER.dumps(result), status=int(status), headers=headers,
                          mimetype="application/json")
