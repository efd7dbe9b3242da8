"""How a JSON parse error is told in one line: json's message, then where, without saying "at" twice.

json's own messages sometimes end in "at" ("Unterminated string starting at"), sometimes not
("Expecting ',' delimiter"): https://github.com/python/cpython/blob/3.11/Lib/json/decoder.py
"""

from __future__ import annotations

import json


def json_error_text(exc: json.JSONDecodeError, *, with_line: bool = False) -> str:
    """e.g. "Expecting ',' delimiter at column 14", "Unterminated string starting at line 3 column 10"."""
    place = f"line {exc.lineno} column {exc.colno}" if with_line else f"column {exc.colno}"
    message = exc.msg.removesuffix(" at")
    return f"{message} at {place}"
