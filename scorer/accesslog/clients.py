"""The client field of a log line as one spelling per visitor.

An IPv6 address is written compressed in lower case without brackets or
zone id, an IPv4-mapped one as its IPv4 address, and a host name in lower
case; anything else names no visitor.
"""

import functools
import ipaddress
import re

# RFC 1123, section 2.1: a host name's labels are letters, digits and
# hyphens, not starting or ending with a hyphen, up to 63 characters each.
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_HOST_NAME_CHARS = 253


# A log repeats its clients' fields line after line; parsing an address
# with ipaddress costs more than the rest of the line.
@functools.lru_cache(maxsize=4096)
def canonical_client(field: str) -> str | None:
    """The client's address or host name in one spelling, or None."""
    unbracketed = field.removeprefix("[").removesuffix("]")
    # RFC 4007, section 11: the zone after % names the server's interface,
    # not the visitor.
    without_zone = unbracketed.partition("%")[0] if ":" in field else field
    try:
        address = ipaddress.ip_address(without_zone)
    except ValueError:
        return _host_name(field)

    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _host_name(field: str) -> str | None:
    # One label alone ("unknown", "localhost") names no visitor, and a last
    # label of digits only is a mistyped address, not a name.
    name = field.lower().removesuffix(".")
    labels = name.split(".")
    well_formed = all(_HOST_LABEL.fullmatch(label) for label in labels)
    qualified = len(labels) > 1 and not labels[-1].isdigit()
    if len(name) > _MAX_HOST_NAME_CHARS or not (well_formed and qualified):
        return None
    return name
