"""File types by extension: downloads, static files and other files.

A download has an asset type; a static file is fetched by the browser to
draw a page; an other file is one nobody reads as a page.
"""

import functools
from collections.abc import Mapping

# Documents: a person reads them as they would a whitepaper; the asset types
# are those `schemas/content_download.v1.avsc` names.
_DOCUMENT_EXTENSIONS = (
    ".pdf",
    ".doc",
    ".docx",
    ".odt",
    ".ppt",
    ".pptx",
    ".odp",
    ".xls",
    ".xlsx",
    ".ods",
)
_EBOOK_EXTENSIONS = (".epub",)
# Installers, packages and archives: the asset type `software`.
_SOFTWARE_EXTENSIONS = (
    ".jar",
    ".py",
    ".whl",
    ".exe",
    ".msi",
    ".dmg",
    ".pkg",
    ".deb",
    ".rpm",
    ".apk",
    ".zip",
    ".7z",
    ".rar",
    ".gz",
    ".tar.gz",
    ".tgz",
    ".bz2",
    ".tar.bz2",
    ".tbz2",
    ".xz",
    ".tar.xz",
    ".txz",
)
DEFAULT_DOWNLOAD_EXTENSIONS = (
    _DOCUMENT_EXTENSIONS + _EBOOK_EXTENSIONS + _SOFTWARE_EXTENSIONS
)
DEFAULT_ASSET_TYPES: Mapping[str, str] = {
    **dict.fromkeys(_DOCUMENT_EXTENSIONS, "whitepaper"),
    **dict.fromkeys(_EBOOK_EXTENSIONS, "ebook"),
}
DEFAULT_ASSET_TYPE = "software"

# Files a browser fetches on its own to draw a page; they say nothing about
# the reader's interest beyond the page view that caused them.
DEFAULT_STATIC_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".ico",
    ".webp",
    ".bmp",
    ".avif",
    ".css",
    ".js",
    ".mjs",
    ".map",
    ".ttf",
    ".otf",
    ".woff",
    ".woff2",
    ".eot",
    ".swf",
)

# Files nobody reads as a page: data, configuration, source code, backups
# and media played inside a page. Their requests come from scripts, from
# scanners probing for leaked files (.env, .bak, .sql) or from players, and
# are counted as `other_file`; a path with any other extension, or none,
# is a page (``/docs/v2.0``, ``/customers/example.com``).
DEFAULT_OTHER_FILE_EXTENSIONS = (
    ".txt",
    ".md",
    ".xml",
    ".xsl",
    ".json",
    ".csv",
    ".tsv",
    ".log",
    ".sql",
    ".db",
    ".sqlite",
    ".bak",
    ".old",
    ".orig",
    ".swp",
    ".tmp",
    ".ini",
    ".cfg",
    ".conf",
    ".properties",
    ".toml",
    ".yml",
    ".yaml",
    ".env",
    ".sh",
    ".bat",
    ".ps1",
    ".c",
    ".h",
    ".cpp",
    ".rb",
    ".pl",
    ".lua",
    ".pyc",
    ".patch",
    ".diff",
    ".tex",
    ".pcap",
    ".asc",
    ".sig",
    ".pem",
    ".key",
    ".mp3",
    ".mp4",
    ".m4a",
    ".webm",
    ".ogg",
    ".oga",
    ".ogv",
    ".wav",
    ".flac",
    ".avi",
    ".mov",
    ".mkv",
)


def download_extension(path: str, extensions: tuple[str, ...]) -> str | None:
    """The longest of `extensions` that the lower-case `path` ends with, or None."""
    lowered = _lowered(extensions)
    if not path.endswith(lowered):  # one call for the usual answer: no
        return None
    # The longest match wins, so ".tar.gz" is found before ".gz".
    pairs = zip(extensions, lowered, strict=True)
    matches = [ext for ext, low in pairs if path.endswith(low)]
    return max(matches, key=len)


@functools.cache
def _lowered(extensions: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(ext.lower() for ext in extensions)


def extension(path: str) -> str | None:
    """The extension of the path's last segment, with its dot, if any."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else None
