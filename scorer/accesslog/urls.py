"""Request targets and referrers in one spelling, without e-mail addresses.

A page is one page however a client wrote its address: dot segments are
resolved and percent-encoding made uniform (RFC 3986).
"""

import re
from urllib.parse import urlsplit

# RFC 9112, section 3.2.2: a request sent to a proxy names the whole URL;
# what follows the authority is the path and query.
_ABSOLUTE_FORM = re.compile(r"(?i)https?://[^/?#]*([/?].*)?")
_PERCENT_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
# An e-mail address in a path segment or parameter, its @ written or
# encoded (once, or again by a link wrapper: %2540), and a domain whose last
# label is letters (lodash@4.17.21 is a version pin) and ends there (not
# .com2); with the rest of its segment, whatever follows the address in it:
# a file extension, ":token", ",list7", an encoded space.
_EMAIL_SEGMENT = re.compile(
    r"(?<=[/;=])[^/;=@]+(?:@|%(?:25)*40)[^/;]+\.[A-Za-z]{2,}(?![A-Za-z0-9])[^/;]*"
)
EMAIL_PLACEHOLDER = "(e-mail)"
# RFC 3986, section 2.3: characters a URL means the same by, encoded or not.
_UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)


def origin_form(target: str) -> str | None:
    """The path and query of a request target, or None for another form."""
    if target.startswith("/"):
        return target
    absolute = _ABSOLUTE_FORM.fullmatch(target)
    if absolute is None:
        return None
    rest = absolute.group(1) or "/"
    return rest if rest.startswith("/") else f"/{rest}"


def target_parts(target: str) -> tuple[str, str, str]:
    """Path, parameters (from the first ";", with it) and query of `target`."""
    path_and_params, _, query = target.partition("?")
    normal = _uniform_encoding(path_and_params)
    path, semicolon, params = normal.partition(";")
    return _without_dot_segments(path), semicolon + params, query


def _without_dot_segments(path: str) -> str:
    """RFC 3986, section 5.2.4: `/blog/../pricing` is `/pricing`."""
    if "/." not in path:
        return path
    segments = path.split("/")[1:]
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")  # `/a/b/..` is the folder `/a/`
    return "/" + "/".join(kept)


def without_email_addresses(path: str) -> str:
    # Unsubscribe and preference links put the reader's e-mail address in
    # the path (/unsubscribe/name@example.com); a lead is a person, and the
    # address would travel with every event. The rules need the rest.
    return _EMAIL_SEGMENT.sub(EMAIL_PLACEHOLDER, path)


def _uniform_encoding(text: str) -> str:
    return _PERCENT_ENCODED.sub(_normal_percent_encoding, text)


def _normal_percent_encoding(encoded: re.Match[str]) -> str:
    # RFC 3986, section 6.2.2: an unreserved character means the same
    # encoded or not (/%70ricing is /pricing), and hex digits ignore case.
    character = chr(int(encoded.group(1), 16))
    if character in _UNRESERVED:
        return character
    return encoded.group(0).upper()


def clean_referrer(referrer: str | None, keep_query: bool) -> str | None:
    # A referrer's query string carries search terms and tracking tokens,
    # its path parameters session ids, and its user-info part can hold
    # credentials: personal data the scorer does not need, so by default
    # only scheme, host and path are kept.
    if referrer is None:
        return None
    try:
        parts = urlsplit(referrer)
        port = parts.port
    except ValueError:
        return None
    # A property that parses the authority again each time it is read.
    hostname = parts.hostname
    if not parts.scheme or not hostname:
        return None

    host = f"[{hostname}]" if ":" in hostname else hostname
    host = host if port is None else f"{host}:{port}"
    # In one spelling first: %2E hid the dot of an address's domain.
    path = without_email_addresses(_uniform_encoding(parts.path))
    if not keep_query:
        return f"{parts.scheme}://{host}{path.partition(';')[0]}"
    cleaned = f"{parts.scheme}://{host}{path}"
    return f"{cleaned}?{parts.query}" if parts.query else cleaned
