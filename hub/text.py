"""Free text from users, peers and plugins: what it may not contain.

Court staff type titles and bodies; agencies return names and messages. None of it may carry NUL
(PostgreSQL cannot store it, C strings end at it) or other control characters (terminal escapes in
a console, header injection in a report, invisible differences between two "equal" names). Line
breaks and tabs are allowed only where text is multi-line (bodies, messages).
"""

from __future__ import annotations

import re

_SINGLE_LINE = re.compile(r"[\x00-\x1f\x7f]")
_MULTI_LINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_character(value: str, *, multiline: bool = False) -> str | None:
    """A description of the first forbidden character in ``value`` (e.g. ``'\\x00' at 3``), or None."""
    found = (_MULTI_LINE if multiline else _SINGLE_LINE).search(value)
    if found is None:
        return None
    return f"{found.group()!r} at position {found.start()}"
