"""fnmatch patterns as regular expressions that Python's ``re`` and JavaScript read alike.

The fake board's ``corrupt`` option is an fnmatch pattern of board paths, matched inside
the node driver. ``glob_regex`` translates it with fnmatch's rules (``*`` and ``?`` match
``/`` too; ``[...]`` and ``[!...]`` sets), escaping so that both engines agree.
"""

from __future__ import annotations

import re

from tools.fakeboard.errors import BadOption

_SPECIAL = set(".^$*+?{}[]\\|()/-")


def _escape_in_set(ch: str) -> str:
    # Everything but letters and digits is escaped (a literal "-" too): no engine then sees a
    # nested set, an operator like "&&" or "--", or a leading "^".
    if ch.isascii() and not ch.isalnum():
        return "\\" + ch
    return ch


def _set_body(body: str) -> str:
    """The inside of a regex set for an fnmatch set body (without its "!"); "" when the set
    is empty. As fnmatch: a "-" after the first character joins a range, a trailing "-" is
    literal, and ranges running backwards (``z-a``) are dropped."""
    if "-" not in body:
        return "".join(map(_escape_in_set, body))
    chunks: list[str] = []
    start, k = 0, 1
    while True:
        k = body.find("-", k)
        if k < 0:
            break
        chunks.append(body[start:k])
        start, k = k + 1, k + 3
    if body[start:]:
        chunks.append(body[start:])
    else:
        chunks[-1] += "-"
    for k in range(len(chunks) - 1, 0, -1):
        if chunks[k - 1][-1] > chunks[k][0]:
            chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
            del chunks[k]
    return "-".join("".join(map(_escape_in_set, chunk)) for chunk in chunks)


def _escape(ch: str) -> str:
    return "\\" + ch if ch in _SPECIAL else ch


def glob_regex(pattern: str) -> str:
    """A regex (no anchors, no flags) for pattern; match it whole with DOTALL semantics.

    BadOption naming the pattern when it is empty or not a string.
    """
    if not isinstance(pattern, str) or not pattern:
        raise BadOption(f"corrupt pattern must be a non-empty string, got {pattern!r}", pattern)
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")  # no closing bracket: a literal "["
                continue
            body = pattern[i:j]
            i = j + 1
            negate = body.startswith("!")
            inside = _set_body(body[1:] if negate else body)
            if inside:
                out.append("[" + ("^" if negate else "") + inside + "]")
            else:
                out.append("." if negate else "(?!)")  # an empty set: any char, or none
        else:
            out.append(_escape(ch))
    regex = "".join(out)
    try:
        re.compile(regex, re.DOTALL)
    except re.error as exc:
        raise BadOption(
            f"corrupt pattern {pattern!r} cannot be used ({exc}); use *, ? and simple [sets]",
            pattern,
        ) from None
    return regex


def matches(pattern: str, path: str) -> bool:
    """True when path matches the fnmatch pattern (as the node driver decides it)."""
    return re.fullmatch(glob_regex(pattern), path, re.DOTALL) is not None
