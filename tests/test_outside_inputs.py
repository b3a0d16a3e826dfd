"""What comes from outside, generated (Hypothesis) and as a corpus: URLs of every scheme, host notation (IPv4 and
IPv6 in each spelling), userinfo, port and IDNA form are fetched only from loopback and only with the setting, or
refused in one sentence naming them; file names of any bytes become inputs or one `bad_name` rejection; a corpus
of broken media (truncated, lying headers, absurd sizes and timestamps, wrong containers) ends, file by file, in
inputs or a named rejection within seconds, nothing half-written. Traffic goes to loopback only: names resolve
through a stub, numeric hosts without DNS, and addresses beyond loopback are checked through the refusal, never
fetched."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import autoannotate, free_port, image_handler
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from core.image_checks import REJECTION_CODES, InspectedImage
from core.terminal import name_refusal, name_safe, terminal_safe
from core.video import VideoRule
from services.ingestion import inspect_batch
from storage.inbox import batch_key_for, list_inbox_files
from storage.urls import UrlFetcher, UrlRefused, address_class, checked_address, unmapped

SETTINGS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
REAL_GETADDRINFO = socket.getaddrinfo
# What the stub resolver answers for names: loopback, and addresses never fetched. No public address: a fetch
# allowed there would leave this machine.
NAMES = {"camera.test": "127.0.0.1", "xn--bcher-kva.test": "127.0.0.1", "metadata.test": "169.254.169.254",
         "cgnat.test": "100.100.100.200", "v6.test": "::1"}
LOOPBACK = ["127.0.0.1", "127.1.2.3", "::1"]
NEVER = ["169.254.169.254", "100.100.100.200", "0.0.0.0", "224.0.0.1", "255.255.255.255", "fe80::1", "ff02::1",
         "::", "2001:db8::1"]
PRIVATE = ["10.0.0.1", "192.168.1.20", "172.16.5.4", "fd00::1", "fec0::1"]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2001:4860:4860::8888"]


def stub_getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
    """Numeric hosts as the C library reads them (every IPv4 spelling inet_aton takes), without DNS; names from
    NAMES after IDNA encoding (which refuses a label over 63 characters as the real call does)."""
    if not isinstance(host, str):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    try:
        return REAL_GETADDRINFO(host, port, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    name = host.encode("idna").decode().lower()
    if name not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    family = socket.AF_INET6 if ":" in NAMES[name] else socket.AF_INET
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (NAMES[name], 0))]


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", stub_getaddrinfo)


def spellings(text: str) -> list[str]:
    """Every way a URL's host can spell the address `text`."""
    address = ipaddress.ip_address(text)
    if address.version == 6:
        return [f"[{address.compressed}]", f"[{address.exploded}]", f"[{address.exploded.upper()}]"]
    a, b, c, d = (int(part) for part in text.split("."))
    number = int(address)
    return [text, str(number), hex(number), f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}",
            f"{a}.{b}.{c * 256 + d}", f"{a}.{b * 65536 + c * 256 + d}", f"[::ffff:{text}]",
            f"[::ffff:{number >> 16:x}:{number & 0xFFFF:x}]"]


@SETTINGS
@given(text=st.sampled_from(LOOPBACK + NEVER + PRIVATE + PUBLIC), allow=st.booleans(), data=st.data())
def test_every_spelling_of_an_address_gets_the_verdict_of_the_address(text: str, allow: bool, data: st.DataObject
                                                                      ) -> None:
    """Decimal, hex, octal, shortened and IPv4-mapped spellings of one address are refused or let through alike:
    loopback and private ones with the setting only, the rest of the non-global ones never (checked, not fetched)."""
    host = data.draw(st.sampled_from(spellings(text)))
    kind, allowed = address_class(unmapped(ipaddress.ip_address(text)))
    checked = checked_address(host.strip("[]"), allow)
    if kind is None or (allowed and allow):
        assert isinstance(checked, str) and unmapped(ipaddress.ip_address(checked)) == ipaddress.ip_address(text)
    else:
        assert not isinstance(checked, str) and f"a {kind} address" in checked.refusal, (host, checked)


@pytest.fixture(scope="module")
def loopback_server() -> Iterator[tuple[int, list[str]]]:
    """A loopback server answering every GET with a JPEG; its port and the paths it was asked for."""
    import io

    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buffer, format="JPEG")
    asked: list[str] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), image_handler(buffer.getvalue(), lambda r: asked.append(r.path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1], asked
    finally:
        httpd.shutdown()


SCHEMES = st.sampled_from(["http", "http", "HTTP", "hTTp", "https", "s3", "ftp", "file", "gopher", "javascript",
                           "data", "ws", ""])
USERINFO = st.sampled_from(["", "", "user@", "user:pass@", "@", "a@b@", "%40@", "127.0.0.1@", "metadata.test@"])
NAME_HOSTS = st.sampled_from([*NAMES, "bücher.test", "CAMERA.TEST", "unknown.test", "a" * 64 + ".test", "",
                              "[::1", "[::1]]", "exa mple.test", "camera.test.", "ex\x00ample.test"])
PATHS = st.text(alphabet=st.sampled_from("abc/ .%?#\t\n\x00é\u202e"), max_size=12).map(lambda p: "/" + p)


@SETTINGS
@given(scheme=SCHEMES, userinfo=USERINFO, allow=st.booleans(), data=st.data(), path=PATHS)
def test_a_generated_url_is_fetched_from_loopback_with_the_setting_or_refused_naming_it(
        loopback_server: tuple[int, list[str]], scheme: str, userinfo: str, allow: bool, data: st.DataObject,
        path: str) -> None:
    """Whatever the URL, `fetch_all` answers for it (no exception), within its deadline and timeout; a file only
    for an http(s) URL whose host is loopback, with the setting on; otherwise a refusal that starts with the URL."""
    port, _ = loopback_server
    numeric = LOOPBACK + NEVER + (PRIVATE if not allow else [])  # a private address allowed would leave loopback
    if data.draw(st.booleans()):  # half the URLs near a fetchable one, so that both ends of the property are met
        scheme = data.draw(st.sampled_from(["http", "HTTP"]))
        host = data.draw(st.sampled_from(["camera.test", "bücher.test", "v6.test", *spellings("127.0.0.1")]))
        port_text = data.draw(st.sampled_from([f":{port}", f":{port}", f":{free_port()}"]))
        userinfo, path = data.draw(st.sampled_from(["", userinfo])), data.draw(st.sampled_from(["/a.jpg", path]))
    else:
        host = data.draw(st.one_of(NAME_HOSTS, st.sampled_from(numeric).flatmap(
            lambda t: st.sampled_from(spellings(t)))))
        port_text = data.draw(st.sampled_from([f":{port}", "", ":0", ":65536", ":99999999", ":abc", ":-1",
                                               f":{free_port()}"]))
    url = f"{scheme}://{userinfo}{host}{port_text}{path}" if scheme else f"{userinfo}{host}{port_text}{path}"
    fetcher = UrlFetcher(allow_private=allow, timeout_s=1, deadline_s=2, tries=2, backoff_s=0.05)
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        result = fetcher.fetch_all([url], Path(folder))[url]
        took = time.monotonic() - started
        left = sorted(p.name for p in Path(folder).iterdir())
    assert took < fetcher.deadline_s + fetcher.timeout_s + 2, (url, took)
    event("refused" if isinstance(result, UrlRefused) else "fetched")
    if isinstance(result, UrlRefused):
        assert str(result).startswith(url) and left == [], (url, result, left)
        return
    assert allow and scheme.lower() == "http", url
    resolved = stub_getaddrinfo(urlsplit(url).hostname, None)[0][4][0]
    assert unmapped(ipaddress.ip_address(resolved)).is_loopback, (url, resolved)
    assert len(left) == 1 and left[0].endswith(".image"), left


NAME_BYTES = st.binary(min_size=1, max_size=60).filter(lambda b: b"/" not in b and b"\x00" not in b
                                                        and b not in (b".", b".."))


@SETTINGS
@given(stems=st.lists(NAME_BYTES, min_size=1, max_size=4, unique=True),
       suffix=st.sampled_from([b".jpg", b".png", b"", b".mp4", b".urls", b".JPG"]))
@example(stems=[b"\t"], suffix=b".urls")  # found: a list that is not UTF-8 text failed the batch
@example(stems=[b"two\nlines"], suffix=b".jpg")  # found: a newline in a name was taken as it is
@example(stems=[b"bad\xff\xfe", b"good"], suffix=b".jpg")
def test_a_file_name_of_any_bytes_is_an_input_or_one_bad_name_rejection(stems: list[bytes], suffix: bytes) -> None:
    """Each name is taken (its bytes checked as an image, video or list) or refused as `bad_name` exactly when it
    is not UTF-8 or holds control characters; every sentence is safe to print; the batch's key is made."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(buffer, format="PNG")
    with tempfile.TemporaryDirectory() as folder:
        inbox = Path(folder)
        for stem in stems:
            with open(os.path.join(os.fsencode(inbox), stem + suffix), "wb") as handle:
                handle.write(buffer.getvalue())
        files = list_inbox_files(inbox)
        kept: list[InspectedImage] = []
        batch = inspect_batch(files, 1_000_000, VideoRule(), keep=kept.append, keep_video=lambda *_: None,
                              downloads=inbox / ".downloads")
        assert batch_key_for([str(p.relative_to(inbox)) for p in files], datetime(2026, 12, 7, tzinfo=UTC))
    accepted = {str(source).split("#frame=")[0] for source, _ in batch.accepted}  # a video's frames: its path
    rejected = {str(source): r for source, r in batch.rejected}
    for path in files:
        refusal = name_refusal(str(path))
        if refusal:
            assert rejected[name_safe(str(path))].code == "bad_name" and str(path) not in accepted
        else:
            assert (str(path) in accepted) != (str(path) in rejected), path
    for _, rejection in batch.rejected:
        assert rejection.code in REJECTION_CODES and terminal_safe(rejection.reason) == rejection.reason


def broken_media(folder: Path) -> dict[str, tuple[str, ...]]:
    """Write the corpus into `folder`: each file's name, and the outcomes it may end in (`input` or codes)."""
    import fractions
    import io
    import struct
    import zlib

    import av
    import numpy as np
    import skimage.data
    from PIL import Image

    from apps.demo_scenes import write_video

    def encoded(array: np.ndarray, kind: str) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=kind)
        return buffer.getvalue()

    jpeg, png = encoded(skimage.data.coffee(), "JPEG"), encoded(skimage.data.astronaut(), "PNG")
    sof = jpeg.index(b"\xff\xc0") + 5  # SOF0: precision, then height and width
    lying_jpeg = jpeg[:sof] + struct.pack(">HH", 65000, 65000) + jpeg[sof + 4:]
    huge = b"IHDR" + struct.pack(">II", 100_000, 100_000) + png[24:29]
    lying_png = png[:12] + huge + struct.pack(">I", zlib.crc32(huge)) + png[33:]
    frames = [np.random.default_rng(i).integers(0, 256, (96, 160, 3), dtype=np.uint8) for i in range(20)]
    mp4 = write_video(folder / "clip.mp4", frames, fps=10).read_bytes()
    (folder / "clip.mp4").unlink()
    write_video(folder / "big-frames.mkv", [np.zeros((1088, 1920, 3), np.uint8)] * 2, fps=2)
    with av.open(str(folder / "far-timestamps.mkv"), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        stream.time_base = fractions.Fraction(1, 1000)
        for i, pts in enumerate([0, 100, 10**15]):
            frame = av.VideoFrame.from_ndarray(frames[i][:48, :64].copy(), format="rgb24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    noise = np.random.default_rng(7).bytes(4096)
    corpus = {
        "truncated-half.jpg": (jpeg[: len(jpeg) // 2], ("corrupt",)),
        "truncated-header.jpg": (jpeg[:200], ("corrupt",)),
        "lying-sof.jpg": (lying_jpeg, ("too_many_pixels",)),
        "lying-ihdr.png": (lying_png, ("too_many_pixels",)),
        "bad-crc.png": (png[:16] + struct.pack(">II", 100_000, 100_000) + png[24:], ("corrupt",)),
        "truncated.png": (png[: len(png) // 3], ("corrupt",)),
        "empty.jpg": (b"", ("empty",)),
        "noise.png": (noise, ("not_an_image",)),
        "png-named.jpg": (png, ("input",)),
        "words.jpg": (b"hello, not a picture\n", ("not_an_image",)),
        "animation.gif": (encoded(skimage.data.camera(), "GIF"), ("unsupported_format",)),
        "truncated.mp4": (mp4[: len(mp4) // 2], ("not_a_video",)),  # its index (moov) is at the end
        "head-only.mp4": (mp4[:1024], ("not_a_video",)),
        "noise.mkv": (noise, ("not_a_video",)),
        "picture-named.mp4": (jpeg, ("input",)),  # FFmpeg reads a JPEG as a one-frame video
        "empty.mp4": (b"", ("not_a_video",)),
        "mp4-named.avi": (mp4, ("input",)),
    }
    for name, (data, _) in corpus.items():
        (folder / name).write_bytes(data)
    return {**{name: outcomes for name, (_, outcomes) in corpus.items()},
            "big-frames.mkv": ("too_many_pixels",), "far-timestamps.mkv": ("input",)}


CORPUS_RUN = """
import json, sys, time
from pathlib import Path
from core.video import VideoRule
from services.ingestion import inspect_batch

for path in sorted(Path(sys.argv[1]).iterdir()):
    started = time.monotonic()
    batch = inspect_batch([path], 1_000_000, VideoRule(fps=2.0), keep=lambda image: None,
                          keep_video=lambda *_: None)
    print(json.dumps({"name": path.name, "seconds": round(time.monotonic() - started, 3),
                      "inputs": len(batch.accepted),
                      "rejected": [[r.code, r.reason] for _, r in batch.rejected]}), flush=True)
"""


def test_a_corpus_of_broken_media_ends_file_by_file_in_inputs_or_a_named_rejection(tmp_path: Path) -> None:
    """Each file of the corpus, on its own (apart, so that a hang fails instead of stalling the suite): inputs or
    one rejection naming the file, with the code its damage calls for; then one `run` over the whole corpus
    finishes with exactly those counts, and the next run finds nothing left to fail on. Prints each file's time."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = broken_media(corpus)
    done = subprocess.run([sys.executable, "-c", CORPUS_RUN, str(corpus)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(o["name"] for o in outcomes) == sorted(expected)
    for outcome in sorted(outcomes, key=lambda o: -o["seconds"]):
        print(f"{outcome['seconds']:7.3f} s  {outcome['name']}: {outcome['inputs']} inputs, "
              f"{[code for code, _ in outcome['rejected']]}")
        name, allowed = outcome["name"], expected[outcome["name"]]
        if outcome["rejected"]:
            [[code, reason]] = outcome["rejected"]
            assert code in allowed and name in reason, (name, code, reason)
            assert outcome["inputs"] == 0
        else:
            assert "input" in allowed and outcome["inputs"] >= 1, outcome
    home = tmp_path / "home"
    run = json.loads(autoannotate("run", "--inbox", str(corpus), "--json", home=home,
                                  env={"AUTOANNOTATE_MAX_PIXELS": "1000000"}).stdout)
    assert run["ingestion"]["rejected"] == sum(len(o["rejected"]) for o in outcomes)
    assert run["ingestion"]["inputs"] + run["ingestion"]["duplicates"] == sum(o["inputs"] for o in outcomes)
    again = json.loads(autoannotate("run", "--inbox", str(corpus), "--json", home=home,
                                    env={"AUTOANNOTATE_MAX_PIXELS": "1000000"}).stdout)
    assert again["batch"] is None
