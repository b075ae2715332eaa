"""Which OpenAI-compatible servers may be called, checked where a URL is typed and again on every request.

A project admin types a deployment's server URL, and the web process (chat) and the workers
(generation) then send requests there: without a fence, any address the platform's machines can reach
(the database, a cloud's metadata service at 169.254.169.254, a loopback admin port). The installation
lists the servers it allows; an entry is

  a URL prefix, `https://vllm.example.org` or `http://10.0.0.5:8000/v1`: URLs on that scheme, host and
    port whose path starts with the entry's path. A host an entry names is trusted whatever it resolves
    to (a docker-compose name such as `http://vllm:8000` resolves to a private address);
  `*`: any other http(s) server whose every address is public (not loopback, link-local, private,
    reserved or multicast).

    fence = ServerFence(["https://vllm.example.org", "*"])
    fence.problem("http://127.0.0.1:5432")   # why it is refused, or None
    fence.connect_address("https://a.example.com/v1/chat/completions")   # the address to connect to

The check runs again for every request the openai client sends (redirects included): a name that
resolved to a public address at deploy time and to 127.0.0.1 later is refused then, and a `*` server is
connected to at the very address that was checked, so the name cannot resolve elsewhere in between.
"""

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

ANY = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}


class ServerRefused(ValueError):
    """A URL that the fence does not let the platform call; the message says why."""


@dataclass(frozen=True)
class _Prefix:
    scheme: str
    host: str
    port: int
    path: str

    def admits(self, scheme: str, host: str, port: int, path: str) -> bool:
        return (scheme, host, port) == (self.scheme, self.host, self.port) and (
            not self.path or path == self.path or path.startswith(self.path + "/"))


def _parts(url: str) -> tuple[str, str, int, str]:
    """Return the scheme, the host (an address in its usual spelling), the port and the path of `url`."""
    if not isinstance(url, str):
        raise ServerRefused(f"a server URL must be text, not {type(url).__name__}")
    try:
        split = urlsplit(url.strip())
        port = split.port
    except ValueError as error:  # a port that is not a number, a bad IPv6 literal
        raise ServerRefused(f"{url[:200]!r} is not a URL: {error}") from None
    if split.scheme not in DEFAULT_PORTS or not split.hostname:
        raise ServerRefused(f"{url[:200]!r} is not an http:// or https:// URL with a host")
    if split.username is not None or split.password is not None:
        raise ServerRefused("a server URL may not carry a user name or password; give the key as api_key")
    if split.query or split.fragment:
        raise ServerRefused("a server URL may not carry a query or fragment")
    host = split.hostname.rstrip(".")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return split.scheme, host, port or DEFAULT_PORTS[split.scheme], split.path.rstrip("/")


def _unfit(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return what kind of address this is when it is not a public one."""
    if address.is_unspecified:  # 0.0.0.0 or ::, which connects to this machine
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


class ServerFence:
    """The servers an installation lets the platform call (see the module's docstring for the entries)."""

    def __init__(self, entries: Iterable[str]):
        self.prefixes: list[_Prefix] = []
        self.any_public = False
        for entry in entries:
            if entry.strip() == ANY:
                self.any_public = True
                continue
            try:
                self.prefixes.append(_Prefix(*_parts(entry)))
            except ServerRefused as error:
                raise ValueError(f"{entry!r} is neither {ANY} nor a server URL prefix: {error}") from None

    def problem(self, url: str) -> str | None:
        """Return why `url` may not be called, or None when it may."""
        try:
            self.connect_address(url)
        except ServerRefused as error:
            return str(error)
        return None

    def connect_address(self, url: str) -> str | None:
        """Return the address to connect to for `url`: None to resolve its host as usual (an entry names
        it), else the checked public address. Raise ServerRefused saying why when it may not be called."""
        scheme, host, port, path = _parts(url)
        if any(prefix.admits(scheme, host, port, path) for prefix in self.prefixes):
            return None
        if not self.any_public:
            if not self.prefixes:
                raise ServerRefused("this installation lets no project call a server of its own "
                                    "(OPENAI_BACKEND_URLS is empty)")
            raise ServerRefused(f"{scheme}://{host}:{port} is not among the servers this installation allows "
                                "(OPENAI_BACKEND_URLS)")
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise ServerRefused(f"{host} does not resolve to an address") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(entry[4][0].split("%")[0]) for entry in found))
        for address in addresses:
            # Every address, not only the first: a client may try the next one when the first fails.
            if kind := _unfit(address):
                what = f"{host} is {kind}" if host == str(address) else f"{host} resolves to {address}, {kind}"
                raise ServerRefused(f"{what}; only a server that OPENAI_BACKEND_URLS names may have one")
        return str(addresses[0])
