"""The URL key of ``url_dedup``: two URLs with the same key are the same page crawled twice.

Normalisation, in order:

* surrounding whitespace is stripped; a URL without ``scheme://`` gets ``http://`` (``example.com/a``);
* the scheme is lower-cased, and ``http`` and ``https`` are **unified** (by default): the same page served over
  both, or moved to https between two crawls, is one page. Other schemes (``ftp``) stay distinct;
* user information (``user:password@``) is dropped; the host is lower-cased and a trailing dot removed;
  ``www.`` is *kept* (``www.example.com`` and ``example.com`` can serve different sites);
* the default port (80 for http, 443 for https, 21 for ftp) is removed, any other port kept;
* an empty path becomes ``/``; one trailing slash is removed from any other path (``/a/b/`` = ``/a/b``); the
  path is otherwise kept as is (case-sensitive, percent-encoding untouched);
* the fragment (``#section``) is dropped: it never reaches the server;
* the query string is kept, as is (``keep_query: true``, the default: ``?page=2`` is another page); with
  ``keep_query: false`` it is dropped.

A value that is null, empty, or has no host after parsing has no key: the document passes untouched and is
counted (``no_url``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def normalise_url(url: str | None, keep_query: bool = True, unify_http: bool = True) -> str | None:
    """The normalised key of one URL, or ``None`` when it has none."""
    if url is None:
        return None
    url = url.strip()
    if not url:
        return None
    if "://" not in url:
        url = "http://" + url.lstrip("/")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c.isspace() for c in host):
        return None
    if port is not None and DEFAULT_PORTS.get(scheme) != port:
        host = f"{host}:{port}"
    if unify_http and scheme in ("http", "https"):
        scheme = "http(s)"
    path = parts.path or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    query = f"?{parts.query}" if keep_query and parts.query else ""
    return f"{scheme}://{host}{path}{query}"


def normalise_urls(urls: list[str | None], keep_query: bool = True, unify_http: bool = True) -> list[str | None]:
    return [normalise_url(u, keep_query, unify_http) for u in urls]
