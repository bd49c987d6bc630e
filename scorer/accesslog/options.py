"""How an import turns requests into events: `ImportOptions`."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from scorer.accesslog.file_types import (
    DEFAULT_ASSET_TYPE,
    DEFAULT_ASSET_TYPES,
    DEFAULT_DOWNLOAD_EXTENSIONS,
    DEFAULT_OTHER_FILE_EXTENSIONS,
    DEFAULT_STATIC_EXTENSIONS,
)
from scorer.events import TimeBounds

# A page's category by the longest of these its path starts with.
DEFAULT_CATEGORY_PREFIXES: Mapping[str, str] = {
    "/blog/": "blog",
    "/presentations/": "presentation",
    "/articles/": "article",
    "/projects/": "project",
}


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How requests become events; lists default to the `DEFAULT_*` constants.

    Extensions are written in lower case with their dot; paths are compared
    in lower case. `bounds` should match the scorer's own time bounds.
    """

    salt: str = ""
    by_user_agent: bool = False
    methods: frozenset[str] = frozenset({"GET"})
    keep_feeds: bool = False
    download_extensions: tuple[str, ...] = DEFAULT_DOWNLOAD_EXTENSIONS
    asset_types: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_ASSET_TYPES)
    )
    default_asset_type: str = DEFAULT_ASSET_TYPE
    static_extensions: tuple[str, ...] = DEFAULT_STATIC_EXTENSIONS
    other_file_extensions: tuple[str, ...] = DEFAULT_OTHER_FILE_EXTENSIONS
    category_prefixes: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_PREFIXES)
    )
    keep_referrer_query: bool = False
    # A page's query string can carry what a form sent in a GET (e-mail=,
    # name=) as well as tracking tokens; the rules match paths.
    keep_url_query: bool = False
    bounds: TimeBounds = field(default_factory=TimeBounds)
