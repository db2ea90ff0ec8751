"""Small network helpers for the servers orch starts: free ports, loopback hosts, HTTP probes."""

from __future__ import annotations

import socket
import urllib.parse

__all__ = ["LOCALHOST", "family", "free_port", "http_ok", "reachable_host", "url_host"]

LOCALHOST = "127.0.0.1"


def family(host: str) -> socket.AddressFamily:
    """The address family of ``host`` (IPv6 when it holds a colon)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port nothing listens on at ``host`` right now (the OS picks it)."""
    with socket.socket(family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def reachable_host(bind_host: str) -> str:
    """Where a client on this machine reaches a server bound to ``bind_host``."""
    return {"0.0.0.0": LOCALHOST, "": LOCALHOST, "::": "::1"}.get(bind_host, bind_host)


def url_host(host: str) -> str:
    """``host`` as it goes in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host


def http_ok(url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 3.0) -> bool:
    """Whether ``url`` answers a GET with a success status."""
    import urllib.error  # with http.client and email: not for every orch command
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(response.status < 400)
    except (urllib.error.URLError, OSError):
        return False


def without_credentials(url: str) -> str:
    """``url`` without its ``user:password@`` part: the address to show or link to."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
