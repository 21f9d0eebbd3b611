#!/usr/bin/python3
"""Hostile tracking URLs against the real daemon's listener (curl and raw sockets): a click
token with one byte flipped, two tokens' halves swapped, a token of another kind on /c/, a
huge token, percent-encoded and path tricks are answered 404 (414 past the URL limit) and
record nothing; `?url=` or an extra path or query on a good click never redirects anywhere
but the touch's stored link. (Smuggling, oversized headers, slowloris and the connection cap
are in tests/integration/test_track.py; the parser itself is fuzzed by tests/fuzz/fuzz_http.c.)
"""
import json
import re
import socket
import subprocess
import time

import pytest

from conftest import free_port, write_content  # noqa: F401

LANDING = "https://example.com"
CONTENT = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"],
                                "sender": {"company": "Northwind",
                                           "postal_address": "1 Quay, Bristol"},
                                "scores": {"open": 1, "click": 3}}),
    "sequences/s.json": json.dumps({
        "stage": "awareness", "mode": "nurture", "pixel": True,
        "steps": [{"id": "one", "delay": "0d", "template": "one.md"}]}),
    "templates/one.md": "---\nsubject: One\n---\nRead [the guide]"
                        f"({LANDING}/guide \"guide\") or [the story]({LANDING}/story).\n",
}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def curl(*args):
    r = subprocess.run(["curl", "-sS", "-g", "--path-as-is", "-o", "/dev/null", "-w",
                        "%{http_code} %{redirect_url}", "-A", FIREFOX, *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    code, loc = (r.stdout.split(" ", 1) + [""])[:2]
    return int(code), loc


def raw_get(port, target):
    """One GET of `target` (bytes, sent exactly as given); the status code answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nUser-Agent: " +
                  FIREFOX.encode() + b"\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", out)
    assert m, out
    return int(m.group(1)), out


@pytest.fixture
def tracked(daemon_factory, tmp_path):
    """A daemon whose one message (to maya@example.org) links to its own listener; the
    message's open, click and unsubscribe tokens."""
    content = write_content(tmp_path / "content", CONTENT)
    port = free_port()
    d = daemon_factory(content=content, tracking={"listen": f"127.0.0.1:{port}",
                                                  "base_url": f"http://127.0.0.1:{port}"})
    d.start()
    d.ctl("lead", "add", "maya@example.org", "--first-name", "Maya")
    msg = d.wait_messages(1)[0]
    html = msg.get_body(preferencelist=("html",)).get_content()
    visible = re.sub(r'<a href="[^"]+" style="display:none"[^>]*></a>', "", html)
    found = re.findall(r'(?:href|src)="http://127\.0\.0\.1:\d+/([ocu])/([A-Za-z0-9_-]+)"',
                       visible)
    toks = {"o": [], "c": [], "u": []}
    for kind, tok in found:
        toks[kind].append(tok)
    assert toks["o"] and len(toks["c"]) >= 2 and toks["u"], found
    return d, toks


def recorded(d):
    """What a hostile request must not change: every event row, and the lead as shown."""
    shown = d.ctl("lead", "show", "maya@example.org")
    return (d.sql("SELECT count(*) FROM events")[0][0], shown["lead"]["score"],
            json.dumps(shown["events"], sort_keys=True))


def flip(tok, i):
    c = tok[i]
    return tok[:i] + ("B" if c == "A" else "A") + tok[i + 1:]


def test_forged_click_tokens_get_404_and_record_nothing(tracked):
    d, toks = tracked
    base, click, other = d.base_url, toks["c"][0], toks["c"][1]
    before = recorded(d)
    half = len(click) // 2
    bad = [flip(click, i) for i in (0, 5, half, len(click) - 2, len(click) - 1)]
    bad += [
        click[:half] + other[half:],  # two tokens' halves swapped
        other[:half] + click[half:],
        click[half:] + click[:half],
        toks["o"][0],  # an open token on the click route
        toks["u"][0],  # an unsubscribe token on the click route
        click[:-1],
        click + click,
        "A" * 400,  # a huge token, still under the URL limit
        click.lower() if click.lower() != click else click.upper(),
    ]
    for tok in bad:
        assert tok != click
        assert curl(f"{base}/c/{tok}") == (404, ""), tok
    # The click token on the open and unsubscribe routes is no open and no unsubscribe.
    assert curl(f"{base}/o/{click}")[0] == 404
    assert curl(f"{base}/u/{click}")[0] == 404
    assert curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", f"{base}/u/{click}")[0] == 404
    # Past the URL limit (512 bytes): 414, before any token is looked at.
    assert curl(f"{base}/c/{'A' * 5000}")[0] == 414
    assert curl(f"{base}/c/{click}?{'x' * 5000}")[0] == 414
    time.sleep(0.5)  # well past the 100 ms group commit
    assert recorded(d) == before
    assert d.ctl("lead", "show", "maya@example.org")["lead"]["status"] == "active"


def test_percent_encoding_and_path_tricks_are_never_decoded_into_a_hit(tracked):
    d, toks = tracked
    click, port = toks["c"][0], d.http_port
    before = recorded(d)
    enc = "".join(f"%{ord(ch):02X}" for ch in click)
    tricks = [
        f"/c/{enc}",  # the whole token percent-encoded
        f"/c/%{ord(click[0]):02x}{click[1:]}",  # one character
        f"/%63/{click}",  # the route's letter encoded
        f"/c%2F{click}",
        f"//c/{click}",
        f"/./c/{click}",
        f"/x/../c/{click}",
        f"/C/{click}",
        f"/c//{click}",
        f"/c/{click}%00",
        f"/c/{click}%0d%0aLocation:%20https://evil.example",
        f"/c/{click}/https://evil.example",  # an extra path after the token
        f"/c/{click}%2F..%2F..%2Fo%2F{toks['o'][0]}",
        f"/c/{click};url=https://evil.example",
        f"/c/{click}%3Furl=https://evil.example",
        f"/c/.{click}",
        f"/c/{click}+",
        f"/c/{click}=",
    ]
    for target in tricks:
        code, answer = raw_get(port, target.encode())
        assert code == 404, (target, answer[:200])
        assert b"Location:" not in answer, target
    # Raw bytes no client would send: a NUL, a tab, a CR in the URL; a NUL in a header.
    for target in (b"/c/" + click.encode() + b"\x00", b"/c/\t" + click.encode()):
        code, _ = raw_get(port, target)
        assert code in (400, 404), target
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /c/" + click.encode() + b" HTTP/1.1\r\nHost: t\r\nUser-Agent: a\x00b"
                  b"\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    time.sleep(0.5)
    assert recorded(d) == before


def test_a_redirect_goes_only_to_the_stored_link_whatever_is_appended(tracked):
    d, toks = tracked
    base, click = d.base_url, toks["c"][0]
    code, stored = curl("-I", f"{base}/c/{click}")  # HEAD: the target, nothing recorded
    assert code == 302 and stored.startswith(f"{LANDING}/"), stored
    before = recorded(d)
    time.sleep(0.3)
    assert recorded(d) == before, "a HEAD recorded a click"
    appended = ["?url=https://evil.example", "?url=https%3A%2F%2Fevil.example&next=//evil",
                "?redirect=https://evil.example#x", "?" + "a=b&" * 50,
                "?url=javascript:alert(1)", "?%0d%0aLocation:%20https://evil.example"]
    for extra in appended:
        code, loc = curl(f"{base}/c/{click}{extra}")
        assert (code, loc) == (302, stored), extra
    # Each of those was a real click on the stored link, and nothing else was recorded.
    time.sleep(0.5)
    clicks = d.sql("SELECT detail FROM events WHERE kind = 'click'")
    assert len(clicks) == len(appended), clicks
    assert all("evil" not in detail for (detail,) in clicks), clicks
    assert d.sql("SELECT count(*) FROM events")[0][0] == before[0] + len(appended)
