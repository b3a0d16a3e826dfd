"""Images and videos named by URL: a `*.urls` file (one URL a line) or a CSV with a `url` column in the inbox.
Each URL is fetched once, with bounded concurrency, retries with backoff, a size cap and a content-type check,
over http or https only, and never into an address it must not reach: only globally routable addresses, loopback
and private ones with AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 (`address_class`), each connection made to the address
that was checked. Redirects are followed by hand, each hop checked the same way; one URL's failure, whatever it
is, is that URL's refusal. A bucket inbox's objects (`storage/bucket_inbox.py`) are no URLs: they come typed from
the batch manifest (`BucketObject`) and are read through boto3 with the bucket's credentials; an `s3://` line of
a list is refused as any other scheme is."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.client
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from core.video import VIDEO_SUFFIXES
from storage.s3_blobs import BucketObject, ObjectChanged, S3Blobs

URL_LIST_SUFFIXES = {".urls"}
ACCEPTED_TYPES = ("image/", "video/")
MAX_REDIRECTS = 5


class UrlRefused(ValueError):
    """A URL that is not fetched, or whose answer is not taken; the message says why, naming the URL. `code` is
    its rejection's: `url_private` for an address only AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 lets through (a run with
    it set fetches the URL again), `url_refused` otherwise; `retry` says whether fetching it again may help (a
    server answering 404 may be fixed; an ftp:// scheme never is)."""

    def __init__(self, message: str, code: str = "url_refused", retry: bool = True) -> None:
        super().__init__(message)
        self.code, self.retry = code, retry


def is_url_list(path: Path) -> bool:
    """A `*.urls` file, or a CSV whose header has a `url` column."""
    if path.suffix.lower() in URL_LIST_SUFFIXES:
        return True
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return "url" in [column.strip().lower() for column in header]


def read_url_list(path: Path) -> list[str]:
    """The URLs a list names, in order, each once (blank lines and `#` comments skipped)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = csv.DictReader(handle)
            column = next(c for c in rows.fieldnames or [] if c.strip().lower() == "url")
            urls = [(row.get(column) or "").strip() for row in rows]
    else:
        urls = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return list(dict.fromkeys(u for u in urls if u and not u.startswith("#")))


def address_refusal(host: str, allow_private: bool) -> str | None:
    """Why `host` may not be fetched (None when it may): every address it resolves to is checked."""
    checked = checked_address(host, allow_private)
    return checked.refusal if isinstance(checked, AddressRefusal) else None


@dataclass(frozen=True)
class AddressRefusal:
    refusal: str
    private: bool = False  # a loopback or private address: AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 lets it through
    final: bool = False  # an address never fetched (link-local, multicast, reserved)


def checked_address(host: str, allow_private: bool) -> str | AddressRefusal:
    """The address to connect to for `host`, resolved once (a second resolution, as urllib's own connect would make,
    could answer another address: DNS rebinding), or why none may be: every address it resolves to is checked."""
    try:
        addresses = [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
    except (socket.gaierror, UnicodeError) as error:
        return AddressRefusal(f"its host {host} does not resolve ({getattr(error, 'strerror', None) or error})")
    for text in sorted(set(addresses)):
        address = unmapped(ipaddress.ip_address(text.split("%")[0]))
        kind, allowed = address_class(address)
        if kind is None or (allowed and allow_private):
            continue
        if allowed:
            return AddressRefusal(f"its host {host} is {address}, a {kind} address "
                                  "(AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 allows it)", private=True)
        return AddressRefusal(f"its host {host} is {address}, a {kind} address (never fetched)", final=True)
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked; the request still names its host (Host header)."""

    def __init__(self, *args: Any, pinned: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned = pinned

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As `_PinnedHTTPConnection`, over TLS verified for the host's name (SNI and the certificate's name)."""

    def __init__(self, *args: Any, pinned: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned = pinned

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def pinned_opener(address: str) -> urllib.request.OpenerDirector:
    """An opener whose connections go to `address` whatever the URL's host resolves to now; no proxy (a proxy
    would resolve the host again) and no redirects followed (each hop is checked by hand)."""

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(functools.partial(_PinnedHTTPConnection, pinned=address), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(functools.partial(_PinnedHTTPSConnection, pinned=address), req,
                                context=ssl.create_default_context())

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects, Http, Https)


CGNAT = ipaddress.ip_network("100.64.0.0/10")  # shared address space: carrier-grade NAT, some clouds' metadata
# A team's own networks (RFC 1918, IPv6 unique-local and the old site-local); Python's `is_private` also counts
# documentation and reserved ranges, which are never fetched.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                           "fc00::/7", "fec0::/10"))


def unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 address written as IPv6 (::ffff:a.b.c.d) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_class(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str | None, bool]:
    """What kind of address this is when it is not globally routable (None when it is), and whether the private-URL
    setting may allow it: loopback and private ones may; link-local (cloud metadata), shared (carrier-grade NAT),
    multicast, unspecified and reserved ones never."""
    address = unmapped(address)
    if address.is_loopback:
        return "loopback", True
    if address.is_link_local:
        return "link-local", False
    if address in CGNAT:
        return "shared (carrier-grade NAT)", False
    if address.is_multicast:
        return "multicast", False
    if address.is_unspecified:
        return "unspecified", False
    if any(address in network for network in PRIVATE_NETWORKS if network.version == address.version):
        return "private", True
    if not address.is_global:
        return "reserved", False
    return None, True


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # followed by hand, so that every hop is checked


@dataclass(frozen=True)
class UrlFetcher:
    """How URLs are fetched: at most `workers` at once, `tries` times each (backoff `backoff_s`, doubling) on
    errors worth retrying, `timeout_s` per request, at most `max_bytes` each, all of it within `deadline_s` of the
    first try (a server trickling a byte a second is cut off); a bucket inbox's server that stops answering is
    waited for `store_wait_s` (as the image store is)."""

    allow_private: bool = False
    max_bytes: int = 200_000_000
    timeout_s: float = 30.0
    deadline_s: float = 60.0
    store_wait_s: float = 60.0
    tries: int = 3
    backoff_s: float = 0.5
    workers: int = 4

    def target_for(self, url: str, folder: Path) -> Path:
        """Where a URL's bytes are kept (by the URL's sha256): `.image` or `.video` once fetched, by its type."""
        return folder / hashlib.sha256(url.encode()).hexdigest()[:32]

    def fetch_all(self, urls: list[str], folder: Path, objects: Sequence[BucketObject] = ()
                  ) -> dict[str, Path | UrlRefused]:
        """Each URL of a list and each object of a bucket inbox (by its `source`), once, fetched into `folder`:
        its file, or why not."""
        folder.mkdir(parents=True, exist_ok=True)
        jobs: dict[str, tuple[Callable[[Path, float], Path], bool]] = {
            url: (functools.partial(self._fetch_url, url), False) for url in urls}
        jobs.update({item.source: (functools.partial(self._fetch_object, item), True) for item in objects})
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            results = list(pool.map(lambda job: self._fetch_or_refusal(job[0], job[1][0], job[1][1], folder),
                                    jobs.items()))
        return dict(zip(jobs, results, strict=True))

    def _fetch_or_refusal(self, source: str, fetch_once: Callable[[Path, float], Path], from_store: bool,
                          folder: Path) -> Path | UrlRefused:
        """One URL's (or object's) file, or its refusal: whatever fails in parsing, resolving, connecting,
        reading or decoding a URL (a malformed one, a server breaking HTTP) is that URL's, and the others of the
        list go on. A bucket inbox's store that stops answering still fails the batch, which the next run takes
        again."""
        try:
            return self._fetch(source, fetch_once, folder)
        except UrlRefused as refused:
            return refused
        except Exception as error:  # see above: one URL's failure is never the batch's
            if from_store:
                raise
            return UrlRefused(f"{source} could not be fetched ({type(error).__name__}: {error}).")

    def _fetch(self, source: str, fetch_once: Callable[[Path, float], Path], folder: Path) -> Path:
        target = self.target_for(source, folder)
        for kept in (target.with_suffix(".image"), target.with_suffix(".video")):
            if kept.exists():  # the same URL is fetched once
                return kept
        deadline = time.monotonic() + self.deadline_s
        for attempt in range(self.tries):
            try:
                return fetch_once(target, deadline)
            except _Retry as retry:
                if attempt + 1 == self.tries or time.monotonic() + self.backoff_s * 2 ** attempt > deadline:
                    raise UrlRefused(f"{source} could not be fetched after {self.tries} tries ({retry}).") from None
                time.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")

    def _fetch_url(self, url: str, target: Path, deadline: float) -> Path:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                scheme = f"{parts.scheme}:// is not http or https" if parts.scheme else "it names no scheme"
                via = "" if current == url else f" (it redirected to {current})"
                raise UrlRefused(f"{url} is refused{via}: {scheme}; a list names http or https URLs only.",
                                 retry=False)
            address = checked_address(parts.hostname, self.allow_private)
            if isinstance(address, AddressRefusal):
                via = "" if current == url else f" (it redirected to {current})"
                raise UrlRefused(f"{url} is refused{via}: {address.refusal}.",
                                 "url_private" if address.private else "url_refused", retry=not address.final)
            try:
                request = urllib.request.Request(current, headers={"User-Agent": "autoannotate"})
                response = pinned_opener(address).open(request, timeout=self.timeout_s)
            except urllib.error.HTTPError as error:
                if error.code in (301, 302, 303, 307, 308) and error.headers.get("Location"):
                    current = urljoin(current, error.headers["Location"])
                    continue
                if error.code >= 500 or error.code == 429:
                    raise _Retry(f"HTTP {error.code}") from None
                raise UrlRefused(f"{url} answered HTTP {error.code} ({error.reason}).") from None
            except TimeoutError:
                raise _Retry(f"no answer within {self.timeout_s:g} s") from None
            except (urllib.error.URLError, ConnectionError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise _Retry(str(reason)) from None
            with response:
                return self._save(url, response, target, deadline)
        raise UrlRefused(f"{url} redirected more than {MAX_REDIRECTS} times.")

    def _fetch_object(self, item: BucketObject, target: Path, deadline: float) -> Path:
        """An object of a bucket inbox, through boto3 with the bucket's credentials, as it was when listed. Gone
        or changed since: refused (a changed one is listed again by the next run); a store that does not answer
        fails the batch, which the next run takes again."""
        try:
            body = S3Blobs(f"s3://{item.bucket}", self.store_wait_s).open(item.key, item.etag or None)
        except KeyError:
            raise UrlRefused(f"{item.location} is no longer in its bucket.") from None
        except ObjectChanged:
            raise UrlRefused(f"{item.location} changed since it was listed; the next run takes it as it is "
                             "now.") from None
        kind = "video/" if Path(item.key).suffix.lower() in VIDEO_SUFFIXES else "image/"
        with body:
            return self._keep(item.source, body, target, kind, deadline)

    def _save(self, url: str, response: object, target: Path, deadline: float) -> Path:
        headers = response.headers  # type: ignore[attr-defined]
        kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not kind.startswith(ACCEPTED_TYPES):
            raise UrlRefused(f"{url} is {kind or 'of no stated type'}, not an image or a video.")
        declared = headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise UrlRefused(f"{url} is {int(declared)} bytes, more than the limit of {self.max_bytes} "
                             "(AUTOANNOTATE_URL_MAX_BYTES).")
        return self._keep(url, response, target, kind, deadline)

    def _keep(self, url: str, response: object, target: Path, kind: str, deadline: float) -> Path:
        """The answer's bytes at `target` (`.image` or `.video` by `kind`), at most `max_bytes`, by `deadline`."""
        partial = target.with_name(target.name + ".part")
        received = 0
        try:
            # `read1` answers with what has arrived (`read` would wait for the whole block from a trickle)
            read = getattr(response, "read1", None) or response.read  # type: ignore[attr-defined]
            with partial.open("wb") as handle:
                while block := read(1 << 16):
                    received += len(block)
                    if received > self.max_bytes:
                        raise UrlRefused(f"{url} sent more than the limit of {self.max_bytes} bytes "
                                         "(AUTOANNOTATE_URL_MAX_BYTES).")
                    handle.write(block)
                    if time.monotonic() > deadline:
                        raise UrlRefused(f"{url} was not received whole within {self.deadline_s:g} s "
                                         "(AUTOANNOTATE_URL_DEADLINE_S).")
        except TimeoutError:
            partial.unlink(missing_ok=True)
            raise _Retry(f"it stopped sending for {self.timeout_s:g} s") from None
        except BaseException:  # a refusal, a reset mid-body, bad chunked encoding: nothing half-written stays
            partial.unlink(missing_ok=True)
            raise
        declared = getattr(response, "headers", {}).get("Content-Length") or ""
        if declared.isdigit() and received < int(declared):  # the connection ended before the body did
            partial.unlink(missing_ok=True)
            raise UrlRefused(f"{url} sent {received} of the {int(declared)} bytes it announced.")
        kept = target.with_suffix(".video" if kind.startswith("video/") else ".image")
        partial.replace(kept)
        return kept


class _Retry(Exception):
    """A failure worth another try: no answer, a dropped connection, a server error."""
