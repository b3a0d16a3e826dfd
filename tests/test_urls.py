"""URL inputs, fetched from a loopback HTTP server: redirects, 404, slow, too big, wrong type, a redirect into a
link-local address refused, loopback refused unless allowed, each URL fetched once; then a run over a URL list."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from helpers import autoannotate, image_handler, query
from PIL import Image

from apps.demo_scenes import write_video
from core.settings import Settings
from resources import build_resources
from storage.urls import UrlFetcher, UrlRefused, address_class, address_refusal, is_url_list, read_url_list


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Counter]]:
    """A loopback server; returns its base URL and how often each path was asked for."""
    clip = write_video(tmp_path_factory.mktemp("clip") / "clip.mp4",
                       [np.random.default_rng(i).integers(0, 256, (96, 160, 3), dtype=np.uint8) for i in range(10)],
                       fps=10).read_bytes()
    routes = {"/coffee.jpg": ("image/jpeg", jpeg(skimage.data.coffee())),
              "/chelsea": ("image/jpeg; charset=binary", jpeg(skimage.data.chelsea())),
              "/clip.mp4": ("video/mp4", clip), "/page.html": ("text/html", b"<html></html>"),
              "/big.jpg": ("image/jpeg", b"\xff" * 300_000)}
    hits: Counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hits[self.path] += 1
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/chelsea")
                self.end_headers()
            elif self.path == "/metadata":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
            elif self.path == "/later.jpg" and hits[self.path] == 1:  # missing when first asked for, there after
                self.send_error(404, "Not Found")
            elif self.path == "/later.jpg":
                self._send(*routes["/coffee.jpg"])
            elif self.path == "/slow.jpg":
                time.sleep(1.5)
                self._send(*routes["/coffee.jpg"])
            elif self.path in routes:
                self._send(*routes[self.path])
            else:
                self.send_error(404, "Not Found")

        def _send(self, kind: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()


def test_each_answer_is_checked_and_every_refusal_names_the_url(server: tuple[str, Counter], tmp_path: Path) -> None:
    base, hits = server
    fetcher = UrlFetcher(allow_private=True, max_bytes=200_000, timeout_s=0.5, tries=2, backoff_s=0.05)
    urls = [f"{base}/coffee.jpg", f"{base}/moved", f"{base}/missing.jpg", f"{base}/slow.jpg", f"{base}/big.jpg",
            f"{base}/page.html", f"{base}/metadata", "ftp://example.com/a.jpg", f"{base}/clip.mp4",
            f"{base}/coffee.jpg"]
    results = fetcher.fetch_all(urls, tmp_path / "downloads")
    assert len(results) == 9  # the same URL twice is one URL
    assert results[f"{base}/coffee.jpg"].suffix == ".image" and results[f"{base}/clip.mp4"].suffix == ".video"
    assert results[f"{base}/moved"].read_bytes() == jpeg(skimage.data.chelsea())  # the redirect followed
    said = {url: str(r) for url, r in results.items() if isinstance(r, UrlRefused)}
    assert said == {
        f"{base}/missing.jpg": f"{base}/missing.jpg answered HTTP 404 (Not Found).",
        f"{base}/slow.jpg": f"{base}/slow.jpg could not be fetched after 2 tries (no answer within 0.5 s).",
        f"{base}/big.jpg": f"{base}/big.jpg is 300000 bytes, more than the limit of 200000 "
                           "(AUTOANNOTATE_URL_MAX_BYTES).",
        f"{base}/page.html": f"{base}/page.html is text/html, not an image or a video.",
        f"{base}/metadata": f"{base}/metadata is refused (it redirected to http://169.254.169.254/latest/meta-data/): "
                            "its host 169.254.169.254 is 169.254.169.254, a link-local address (never fetched).",
        "ftp://example.com/a.jpg": "ftp://example.com/a.jpg is refused: ftp:// is not http or https; a list names "
                                   "http or https URLs only.",
    }
    # Which of them fetching again may help: not a scheme or an address never fetched.
    assert {url for url, r in results.items() if isinstance(r, UrlRefused) and not r.retry} == {
        f"{base}/metadata", "ftp://example.com/a.jpg"}
    assert hits["/coffee.jpg"] == 1 and hits["/slow.jpg"] == 2  # fetched once; the slow one tried twice
    again = fetcher.fetch_all([f"{base}/coffee.jpg"], tmp_path / "downloads")
    assert again[f"{base}/coffee.jpg"] == results[f"{base}/coffee.jpg"] and hits["/coffee.jpg"] == 1

    refused = UrlFetcher(allow_private=False).fetch_all([f"{base}/coffee.jpg"], tmp_path / "elsewhere")
    assert str(refused[f"{base}/coffee.jpg"]) == (f"{base}/coffee.jpg is refused: its host 127.0.0.1 is 127.0.0.1, a "
                                                  "loopback address (AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 allows it).")
    assert refused[f"{base}/coffee.jpg"].code == "url_private"  # a run with the setting on fetches it again
    assert {r.code for r in results.values() if isinstance(r, UrlRefused)} == {"url_refused"}


@pytest.mark.parametrize(("address", "kind", "allowed"), [
    ("8.8.8.8", None, True), ("2001:4860:4860::8888", None, True),
    ("127.0.0.1", "loopback", True), ("::1", "loopback", True), ("::ffff:127.0.0.1", "loopback", True),
    ("10.1.2.3", "private", True), ("172.20.0.1", "private", True), ("192.168.1.1", "private", True),
    ("fd00::1", "private", True), ("fec0::1", "private", True),
    ("169.254.169.254", "link-local", False), ("fe80::1", "link-local", False),
    ("::ffff:169.254.169.254", "link-local", False),
    ("100.100.100.200", "shared (carrier-grade NAT)", False), ("100.64.0.1", "shared (carrier-grade NAT)", False),
    ("224.0.0.1", "multicast", False), ("ff02::1", "multicast", False), ("0.0.0.0", "unspecified", False),
    ("::", "unspecified", False), ("240.0.0.1", "reserved", False), ("192.0.2.1", "reserved", False),
    ("2001:db8::1", "reserved", False),
])
def test_every_address_that_is_not_globally_routable_is_named_by_its_class(address: str, kind: str | None,
                                                                          allowed: bool) -> None:
    """Checked through the refusal function only: nothing outside loopback is ever fetched by a test. Before, CGNAT
    (100.100.100.200, a cloud metadata address) and fec0::/10 passed, and [::1] was refused even with the setting."""
    assert address_class(ipaddress.ip_address(address)) == (kind, allowed)
    with_setting, without = address_refusal(address, True), address_refusal(address, False)
    shown = address.removeprefix("::ffff:")  # a mapped IPv4 address is named as the IPv4 address it is
    if kind is None:
        assert with_setting is None and without is None
    elif allowed:
        assert with_setting is None
        assert without == f"its host {address} is {shown}, a {kind} address (AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 " \
                          "allows it)"
    else:
        assert with_setting == without == f"its host {address} is {shown}, a {kind} address (never fetched)"


@pytest.fixture(scope="module")
def broken_server() -> Iterator[str]:
    """A loopback server that breaks HTTP in each of the ways a hostile one can, by path."""
    import socketserver

    good = jpeg(skimage.data.coffee())
    answers = {
        "/weird-status": b"HTTP/1.1 abc Weird\r\n\r\n",
        "/long-header": b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        "/many-headers": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
        "/reset": b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" + good[:500],
        "/bad-chunks": b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nabc\r\n",
        **{path: b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body) + body
           for path, body in (("/good.jpg", good), ("/astronaut.jpg", jpeg(skimage.data.astronaut())),
                              ("/rocket.jpg", jpeg(skimage.data.rocket())))},
    }

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            path = self.rfile.readline().split()[1].decode().split("?")[0]
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            if path == "/trickle.jpg":  # a byte every 50 ms: each read is answered well within its timeout
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
                for byte in good[:200]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)
                return
            self.wfile.write(answers.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))

    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_a_url_or_a_server_breaking_http_is_that_urls_refusal_and_the_others_are_fetched(
        broken_server: str, tmp_path: Path) -> None:
    """Each of these raised out of `fetch_all` before, taking the good URLs of the list with it."""
    base = broken_server
    broken = [f"{base}/weird-status", f"{base}/long-header", f"{base}/many-headers", f"{base}/reset",
              f"{base}/bad-chunks", f"{base}/a b.jpg", "http://[::1/x", f"http://{'a' * 64}.example/x.jpg"]
    good = [f"{base}/good.jpg", f"{base}/good.jpg?copy=2", f"{base}/good.jpg?copy=3"]
    fetcher = UrlFetcher(allow_private=True, timeout_s=2, tries=1)
    results = fetcher.fetch_all(broken + good, tmp_path / "downloads")
    assert [url for url, r in results.items() if isinstance(r, Path)] == good
    assert all(results[url].read_bytes() == jpeg(skimage.data.coffee()) for url in good)
    for url in broken:
        assert isinstance(results[url], UrlRefused) and str(results[url]).startswith(url), results[url]
    assert sorted(p.suffix for p in (tmp_path / "downloads").iterdir()) == [".image"] * 3  # no .part left

    trickle = UrlFetcher(allow_private=True, timeout_s=2, deadline_s=1).fetch_all([f"{base}/trickle.jpg"],
                                                                                  tmp_path / "slow")
    assert str(trickle[f"{base}/trickle.jpg"]) == (f"{base}/trickle.jpg was not received whole within 1 s "
                                                  "(AUTOANNOTATE_URL_DEADLINE_S).")
    assert list((tmp_path / "slow").iterdir()) == []


def test_one_list_of_every_hostile_kind_ingests_exactly_its_three_good_urls_in_one_run(
        broken_server: str, tmp_path: Path) -> None:
    """The issue's list, in one `run`: a line of each kind that failed the batch, steered the fetch or held it open
    (a bucket object, a space, a broken status line, a 70 KB header, 120 headers, a reset mid-body, bad chunks, a
    63+ character label, an unclosed IPv6 bracket, a trickle, carrier-grade NAT and link-local metadata addresses)
    and three good URLs: exactly the three are ingested and every other line is named by its own rejection. No
    line sends traffic beyond loopback (the addresses outside it are refused by class, before any connection)."""
    base = broken_server
    hostile = ["s3://someone-elses-bucket/private/secret.jpg", f"{base}/a b.jpg", f"{base}/weird-status",
               f"{base}/long-header", f"{base}/many-headers", f"{base}/reset", f"{base}/bad-chunks",
               f"http://{'a' * 64}.example/x.jpg", "http://[::1/x", f"{base}/trickle.jpg",
               "http://100.100.100.200/latest/meta-data/", "http://[::ffff:169.254.169.254]/latest/meta-data/"]
    good = [f"{base}/good.jpg", f"{base}/astronaut.jpg", f"{base}/rocket.jpg"]
    listed = tmp_path / "everything.urls"
    listed.write_text("".join(f"{url}\n" for url in hostile[:6] + good + hostile[6:]))
    home = tmp_path / "home"
    env = {"AUTOANNOTATE_ALLOW_PRIVATE_URLS": "1", "AUTOANNOTATE_URL_DEADLINE_S": "2",
           "AUTOANNOTATE_URL_TIMEOUT_S": "2"}
    run = json.loads(autoannotate("run", "--urls", str(listed), "--json", home=home, env=env).stdout)
    assert run["ingestion"] == {"inputs": 3, "duplicates": 0, "rejected": len(hostile)}
    store = build_resources(Settings(home=home))["store"]
    assert query(store, "SELECT uri FROM input_sources ORDER BY uri")["uri"].tolist() == sorted(good)
    rejected = {r["uri"]: r for r in run["rejections"]}
    assert sorted(rejected) == sorted(hostile)
    for url, rejection in rejected.items():
        assert rejection["reason_code"] == "url_refused" and rejection["reason"].startswith(url), rejection
    assert rejected[hostile[0]]["reason"] == (f"{hostile[0]} is refused: s3:// is not http or https; a list names "
                                              "http or https URLs only.")
    assert "was not received whole within 2 s" in rejected[f"{base}/trickle.jpg"]["reason"]
    assert "shared (carrier-grade NAT) address (never fetched)" in rejected[hostile[10]]["reason"]
    assert "link-local address (never fetched)" in rejected[hostile[11]]["reason"]
    again = json.loads(autoannotate("run", "--json", home=home, env=env).stdout)
    assert again["batch"] is None  # the batch finished: nothing is left to fail the next run


def test_url_lists_are_text_files_or_csvs_with_a_url_column(tmp_path: Path) -> None:
    listed = tmp_path / "photos.urls"
    listed.write_text("# cameras\nhttps://a.example/1.jpg\n\nhttps://a.example/2.jpg\nhttps://a.example/1.jpg\n")
    table = tmp_path / "photos.csv"
    table.write_text("id,URL\n1,https://b.example/x.png\n2,\n")
    other = tmp_path / "labels.csv"
    other.write_text("file,concept\na.jpg,ball\n")
    assert [is_url_list(p) for p in (listed, table, other)] == [True, True, False]
    assert read_url_list(listed) == ["https://a.example/1.jpg", "https://a.example/2.jpg"]
    assert read_url_list(table) == ["https://b.example/x.png"]


def test_a_run_over_a_url_list_ingests_images_and_video_frames_and_rejects_with_the_reason(
        server: tuple[str, Counter], tmp_path: Path) -> None:
    base, hits = server
    home = tmp_path / "home"
    (home / "inbox").mkdir(parents=True)
    listed = tmp_path / "today.urls"
    listed.write_text(f"{base}/coffee.jpg\n{base}/moved\n{base}/clip.mp4\n{base}/missing.jpg\n{base}/page.html\n")
    env = {"AUTOANNOTATE_ALLOW_PRIVATE_URLS": "1", "AUTOANNOTATE_VIDEO_FPS": "5"}
    before = hits["/clip.mp4"]
    autoannotate("run", "--urls", str(listed), home=home, env=env)
    store = build_resources(Settings(home=home))["store"]
    sources = query(store, "SELECT uri FROM input_sources ORDER BY uri")["uri"].tolist()
    assert sources == sorted([f"{base}/coffee.jpg", f"{base}/moved", *(f"{base}/clip.mp4#frame={i}"
                                                                      for i in (0, 2, 4, 6, 8))])
    rejected = query(store, "SELECT uri, reason_code, reason FROM rejected_inputs ORDER BY uri")
    assert rejected.values.tolist() == [
        [f"{base}/missing.jpg", "url_refused", f"{base}/missing.jpg answered HTTP 404 (Not Found). "
                                               "`autoannotate run --retry-refused` fetches it again."],
        [f"{base}/page.html", "url_refused", f"{base}/page.html is text/html, not an image or a video. "
                                             "`autoannotate run --retry-refused` fetches it again."]]
    assert query(store, "SELECT count(*) AS n FROM inputs")["n"][0] == 7
    assert query(store, "SELECT frames_kept FROM videos")["frames_kept"].tolist() == [5]
    # The same list again: nothing fetched again, no new inputs.
    autoannotate("run", "--urls", str(listed), home=home, env=env)
    assert hits["/clip.mp4"] == before + 1
    assert query(store, "SELECT count(*) AS n FROM inputs")["n"][0] == 7
    # A symlink planted where the copy goes is replaced, not written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("kept")
    again = tmp_path / "again.urls"
    again.write_text(f"{base}/coffee.jpg\n")
    planted = home / "inbox" / f"again-{hashlib.sha256(again.read_bytes()).hexdigest()[:8]}.urls"
    planted.symlink_to(victim)
    autoannotate("run", "--urls", str(again), home=home, env=env)
    assert victim.read_text() == "kept" and not planted.is_symlink() and planted.read_text() == again.read_text()
    missing = autoannotate("run", "--urls", str(tmp_path / "nope.urls"), home=home, env=env, check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == (f"autoannotate: The URL list {tmp_path / 'nope.urls'}"
                                                                  " is not a file.")


def test_a_refused_url_is_fetched_again_once_what_refused_it_changes(server: tuple[str, Counter],
                                                                    tmp_path: Path) -> None:
    """A URL refused for a loopback address is fetched by the first run with AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 (its
    list was taken already: before, nothing but editing the list got it in); one that answered 404 only by
    `run --retry-refused`; each refusal says how; a URL that came in is never fetched again."""
    base, hits = server
    home = tmp_path / "home"
    listed = tmp_path / "cameras.urls"
    listed.write_text(f"{base}/chelsea\n{base}/later.jpg\n")
    allowed = {"AUTOANNOTATE_ALLOW_PRIVATE_URLS": "1"}

    def run(*args: str, env: dict | None = None) -> dict:
        return json.loads(autoannotate("run", *args, "--json", home=home, env=env).stdout)

    first = run("--urls", str(listed))
    assert first["ingestion"] == {"inputs": 0, "duplicates": 0, "rejected": 2}
    assert {r["uri"]: (r["reason_code"], r["reason"]) for r in first["rejections"]} == {
        f"{base}/{name}": ("url_private", f"{base}/{name} is refused: its host 127.0.0.1 is 127.0.0.1, a loopback "
                           "address (AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 allows it). A run with "
                           "AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 fetches it again.") for name in ("chelsea", "later.jpg")}
    assert run()["batch"] is None  # the setting is still off: nothing to fetch again
    second = run(env=allowed)
    assert second["ingestion"] == {"inputs": 1, "duplicates": 0, "rejected": 1}
    assert [(r["uri"], r["reason_code"], r["reason"]) for r in second["rejections"]] == [
        (f"{base}/later.jpg", "url_refused", f"{base}/later.jpg answered HTTP 404 (Not Found). "
                                             "`autoannotate run --retry-refused` fetches it again.")]
    assert run(env=allowed)["batch"] is None  # a 404 is fetched again only when asked for
    fourth = run("--retry-refused", env=allowed)
    assert fourth["ingestion"] == {"inputs": 1, "duplicates": 0, "rejected": 0}
    assert run("--retry-refused", env=allowed)["batch"] is None  # nothing is refused any more
    assert hits["/later.jpg"] == 2  # refused twice without a request (loopback), then 404, then fetched
    store = build_resources(Settings(home=home))["store"]
    assert query(store, "SELECT uri FROM input_sources ORDER BY uri")["uri"].tolist() == [
        f"{base}/chelsea", f"{base}/later.jpg"]


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DNS rebinding, on loopback: `camera.test` resolves to 127.0.0.1 when it is checked and to 127.0.0.2 after
    (where another server waits on the same port). Before, urllib resolved the host again to connect and fetched
    the second server's answer; now the connection goes to the checked address, naming the host in `Host`."""
    import socket

    seen_hosts: list[str] = []

    def server_answering(address: str, port: int, body: bytes) -> ThreadingHTTPServer:
        handler = image_handler(body, lambda request: seen_hosts.append(request.headers["Host"]))
        httpd = ThreadingHTTPServer((address, port), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    checked, rebound = jpeg(skimage.data.coffee()), jpeg(skimage.data.chelsea())
    first = server_answering("127.0.0.1", 0, checked)
    port = first.server_address[1]
    second = server_answering("127.0.0.2", port, rebound)
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["127.0.0.2"] * 10)

    def rebinding(host: str, *args: object, **kwargs: object) -> list:
        if host == "camera.test":
            return real(next(answers), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        url = f"http://camera.test:{port}/photo.jpg"
        fetched = UrlFetcher(allow_private=True, tries=1).fetch_all([url], tmp_path)[url]
    finally:
        first.shutdown()
        second.shutdown()
    assert isinstance(fetched, Path) and fetched.read_bytes() == checked
    assert seen_hosts == [f"camera.test:{port}"]


def test_an_https_fetch_goes_to_the_checked_address_and_verifies_the_hosts_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Over TLS the pinned connection still sends the URL's host as the server name and checks the certificate
    against it: a certificate for camera.test serves camera.test, and is refused for other.test at the same IP."""
    import shutil
    import socket
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (it makes the test's certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=camera.test", "-addext", "subjectAltName=DNS:camera.test"],
                   check=True, capture_output=True)
    body = jpeg(skimage.data.coffee())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), image_handler(body))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1", "127.0.0.1"] + ["127.0.0.2"] * 10)

    def rebinding(host: str, *args: object, **kwargs: object) -> list:
        return real(next(answers) if host.endswith(".test") else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the test's certificate is the only one trusted
    try:
        good, wrong = f"https://camera.test:{port}/photo.jpg", f"https://other.test:{port}/photo.jpg"
        fetched = UrlFetcher(allow_private=True, tries=1).fetch_all([good, wrong], tmp_path / "downloads")
    finally:
        httpd.shutdown()
    assert isinstance(fetched[good], Path) and fetched[good].read_bytes() == body
    assert isinstance(fetched[wrong], UrlRefused) and "other.test" in str(fetched[wrong])
    assert "certificate" in str(fetched[wrong]).lower() or "hostname" in str(fetched[wrong]).lower()
