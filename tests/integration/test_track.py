#!/usr/bin/python3
"""The tracking listener through the real daemon: real curl for opens, clicks and the one-click
unsubscribe, raw sockets for hostile HTTP, headless Chromium for the delivered message and the
unsubscribe page."""
import http.server
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import wait_for
from test_skeleton import write_content

FIREFOX = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 "
           "Firefox/121.0")
GOOGLE_PROXY = ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                "(via ggpht.com GoogleImageProxy)")
APPLE_MPP = "Mozilla/5.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"


def content_files(landing="https://example.com"):
    return {
        "journey.json": json.dumps({
            "stages": ["awareness", "consideration", "decision", "customer"],
            "sender": {"company": "Northwind", "postal_address": "1 Quay, Bristol"},
            "scores": {"open": 1, "click": 3},
            "rules": [
                {"on": "click", "tag": "pricing", "from": ["consideration"],
                 "move_to": "decision"},
                {"on": "score", "at_least": 4, "from": ["awareness"],
                 "move_to": "consideration"},
                {"on": "event", "kind": "purchase", "action": "customer"},
            ],
        }),
        "sequences/aware.json": json.dumps({
            "stage": "awareness", "mode": "nurture", "pixel": True,
            "steps": [{"id": "one", "delay": "0d", "template": "a/one.md"},
                      {"id": "two", "delay": "5d", "template": "a/two.md"}],
        }),
        "sequences/consider.json": json.dumps({
            "stage": "consideration", "mode": "nurture", "pixel": True,
            "steps": [{"id": "c1", "delay": "0d", "template": "c/c1.md"}],
        }),
        "sequences/decide.json": json.dumps({
            "stage": "decision", "mode": "nurture",
            "steps": [{"id": "d1", "delay": "0d", "template": "d/d1.md"}],
        }),
        "templates/a/one.md": "---\nsubject: One\n---\nRead [the guide]"
                              f"({landing}/guide \"guide\") or [a story]"
                              f"({landing}/story \"story\") or [more]({landing}/more).\n",
        "templates/a/two.md": "---\nsubject: Two\n---\nSecond.\n",
        "templates/c/c1.md": "---\nsubject: Compare\n---\nSee [prices]"
                             f"({landing}/pricing \"pricing\").\n",
        "templates/d/d1.md": "---\nsubject: Decide\n---\nBook a call.\n",
    }


def start(daemon_factory, tmp_path, name="d", landing="https://example.com", tracking=None,
          **config):
    """A daemon on the test content whose messages link to its own tracking port."""
    content = write_content(tmp_path / f"content-{name}", content_files(landing))
    from conftest import free_port
    port = free_port()
    tracking = dict(tracking or {}, listen=f"127.0.0.1:{port}",
                    base_url=f"http://127.0.0.1:{port}")
    return daemon_factory(name, content=content, tracking=tracking, **config).start()


def urls(msg):
    html = msg.get_body(preferencelist=("html",)).get_content()
    visible = re.sub(r'<a href="[^"]+" style="display:none"[^>]*></a>', "", html)
    found = re.findall(r'(?:href|src)="(http://127\.0\.0\.1:\d+/[ocu]/[A-Za-z0-9_-]+)"', visible)
    return {"open": [u for u in found if "/o/" in u], "click": [u for u in found if "/c/" in u],
            "unsub": [u for u in found if "/u/" in u], "html": html}


def curl(*args):
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w",
                        "%{http_code} %{redirect_url} %{content_type}", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    code, loc, ctype = (r.stdout.split(" ") + ["", ""])[:3]
    return int(code), loc, ctype


def events(d, kind=None):
    rows = d.sql("SELECT kind, touch_id, detail, confidence FROM events ORDER BY id")
    out = [(k, t, json.loads(det), c) for k, t, det, c in rows]
    return [e for e in out if kind is None or e[0] == kind]


def lead(d, email="maya@example.org"):
    return d.ctl("lead", "show", email)["lead"]


def first_message(d, email="maya@example.org"):
    d.ctl("lead", "add", email, "--first-name", "Maya")
    return d.wait_messages(1)[0]


def test_opens_and_clicks_are_recorded_score_and_move_the_lead(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path)
    u = urls(first_message(d))
    assert len(u["open"]) == 1 and len(u["click"]) == 3, u["html"]
    d.advance("1h")  # a person reads later than a gateway scans
    code, _, ctype = curl("-A", FIREFOX, u["open"][0])
    assert (code, ctype) == (200, "image/gif")
    # Answered at once, committed within the group commit's 100 ms.
    wait_for(lambda: events(d, "open"), 5, "the open in the database")
    ev = events(d, "open")[0]
    assert ev[2]["confidence"] >= 0.5 and ev[2]["user_agent"] == FIREFOX
    assert ev[2]["since_delivery"] >= 3600 and ev[2]["address"] == "127.0.0.1"
    assert lead(d)["score"] == 1
    # A reload of the pixel is kept but is no new interest.
    curl("-A", FIREFOX, u["open"][0])
    wait_for(lambda: len(events(d, "open")) == 2, 5, "the second open")
    assert events(d, "open")[1][2].get("repeat") is True and lead(d)["score"] == 1
    # The click goes exactly to the message's link, and 1 + 3 points move Maya on.
    code, loc, _ = curl("-A", FIREFOX, u["click"][0])
    assert (code, loc) == (302, "https://example.com/guide")
    wait_for(lambda: lead(d)["stage"] == "consideration", 5, "the move to consideration")
    click = events(d, "click")[0]
    assert click[2]["tag"] == "guide" and click[2]["link"] == 0 and click[3] >= 0.5
    # Consideration's message: its pricing click moves her to decision.
    msgs = d.wait_messages(2)
    c1 = urls(msgs[1])
    d.advance("1h")
    code, loc, _ = curl("-A", FIREFOX, c1["click"][0])
    assert (code, loc) == (302, "https://example.com/pricing")
    wait_for(lambda: lead(d)["stage"] == "decision", 5, "the move to decision")
    shown = d.ctl("lead", "show", "maya@example.org")
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds.count("click") == 2 and kinds.count("open") == 2 and "stage" in kinds
    steps = {(r["sequence"], r["step"]): r for r in d.ctl("stats")["steps"]}
    assert steps[("aware", "one")]["opened"] == 1 and steps[("aware", "one")]["clicked"] == 1
    assert steps[("consider", "c1")]["clicked"] == 1
    assert d.stop() == 0


def test_machine_opens_and_clicks_are_kept_but_do_not_score(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path, tracking={"trusted_proxies": ["127.0.0.1"]})
    u = urls(first_message(d))
    d.advance("1h")
    # Apple Mail Privacy Protection, through the TLS terminator: Apple's address in
    # X-Forwarded-For, its bare user agent.
    curl("-A", APPLE_MPP, "-H", "X-Forwarded-For: 17.58.101.7", u["open"][0])
    curl("-A", GOOGLE_PROXY, "-H", "X-Forwarded-For: 66.249.84.20", u["open"][0])
    curl("-A", SCANNER, "-H", "X-Forwarded-For: 64.235.144.1", u["click"][1])
    # A gateway that follows every link within a second, with a browser's user agent.
    for link in u["click"]:
        curl("-A", FIREFOX, "-H", "X-Forwarded-For: 203.0.113.9", link)
    wait_for(lambda: len(events(d, "click")) == 4 and len(events(d, "open")) == 2, 5,
             "every hit recorded")
    opens, clicks = events(d, "open"), events(d, "click")
    assert opens[0][2]["machine"] == "apple mail privacy protection"
    assert opens[0][2]["address"] == "17.58.101.7"
    assert opens[1][2]["machine"] == "google image proxy"
    assert clicks[0][2]["machine"] == "scanner or script user agent"
    assert clicks[3][2]["machine"] == "several links clicked within a second"
    assert clicks[3][2]["burst"] == 3 and clicks[3][2]["address"] == "203.0.113.9"
    assert all(e[3] < 0.5 for e in opens + [clicks[0], clicks[3]])
    # The first two browser clicks looked human; the burst's third did not. Only the
    # human ones scored: 3 + 3.
    assert lead(d)["score"] == 6
    # The hidden honeypot link: every message has one; whoever follows it is a machine.
    hp = re.search(r'<a href="([^"]+)" style="display:none" aria-hidden="true"', u["html"])
    code, loc, _ = curl("-A", FIREFOX, "-H", "X-Forwarded-For: 198.51.100.3", hp.group(1))
    assert code == 302 and loc.rstrip("/") == d.base_url
    wait_for(lambda: len(events(d, "click")) == 5, 5, "the honeypot click")
    assert events(d, "click")[4][2]["machine"] == "hidden honeypot link"
    assert lead(d)["score"] == 6
    step = d.ctl("stats")["steps"][0]
    # Machine opens count as no open; the two human clicks count as one clicked touch.
    assert (step["opened"], step["clicked"]) == (1, 1), step
    # lead show lists every hit, machine ones included, with their evidence.
    shown = d.ctl("lead", "show", "maya@example.org")
    assert sum(e["kind"] in ("open", "click") for e in shown["events"]) == 7


def test_forwarded_for_counts_only_from_trusted_proxies(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path)
    u = urls(first_message(d))
    d.advance("1h")
    curl("-A", FIREFOX, "-H", "X-Forwarded-For: 17.58.101.7", u["open"][0])
    wait_for(lambda: events(d, "open"), 5, "the open")
    ev = events(d, "open")[0]
    assert ev[2]["address"] == "127.0.0.1" and ev[3] >= 0.5, ev


def test_forged_truncated_and_foreign_tokens_get_404_and_record_nothing(daemon_factory,
                                                                      tmp_path):
    d = start(daemon_factory, tmp_path)
    other = start(daemon_factory, tmp_path, name="other")
    u = urls(first_message(d))
    foreign = urls(first_message(other))
    before = len(events(d))
    good_click = u["click"][0]
    tok = good_click.rsplit("/", 1)[1]
    flipped = tok[:-1] + ("A" if tok[-1] != "A" else "B")
    base = d.base_url
    bad = [
        f"{base}/c/{flipped}",
        f"{base}/c/{tok[:-3]}",
        f"{base}/c/{tok}x",
        # An open token on the click route, and the other daemon's tokens (other secret).
        f"{base}/c/" + u["open"][0].rsplit("/", 1)[1],
        f"{base}/c/" + foreign["click"][0].rsplit("/", 1)[1],
        f"{base}/o/" + foreign["open"][0].rsplit("/", 1)[1],
        f"{base}/u/" + foreign["unsub"][0].rsplit("/", 1)[1],
        f"{base}/o/",
        f"{base}/nothing",
    ]
    for url in bad:
        code, loc, _ = curl("-A", FIREFOX, url)
        assert (code, loc) == (404, ""), url
    code, _, _ = curl("-A", FIREFOX, "-X", "POST", "-d", "List-Unsubscribe=One-Click",
                      f"{base}/u/" + foreign["unsub"][0].rsplit("/", 1)[1])
    assert code == 404
    time.sleep(0.5)  # well past the group commit
    assert len(events(d)) == before
    assert lead(d)["status"] == "active"


def test_one_click_unsubscribes_for_good_and_a_get_never_does(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path)
    msg = first_message(d)
    # The message offers RFC 8058 one-click to mail clients.
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = re.search(r"<(http[^>]+/u/[^>]+)>", msg["List-Unsubscribe"]).group(1)
    for _ in range(3):  # link scanners GET, and so do people looking twice
        code, _, ctype = curl("-A", SCANNER, unsub)
        assert code == 200 and ctype.startswith("text/html")
    assert lead(d)["status"] == "active" and not events(d, "unsubscribe")
    page = subprocess.run(["curl", "-sS", unsub], capture_output=True, text=True).stdout
    assert "maya@example.org" in page and "<button" in page and 'method="post"' in page
    # A POST without the RFC 8058 body changes nothing.
    code, _, _ = curl("-X", "POST", "-d", "hello=1", unsub)
    assert code == 400 and lead(d)["status"] == "active"
    code, _, _ = curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", unsub)
    assert code == 200
    # Committed before the answer: no waiting for a group commit.
    assert d.sql("SELECT status FROM leads")[0][0] == "unsubscribed"
    assert d.sql("SELECT reason FROM suppressions WHERE address = 'maya@example.org'")
    # Again is fine and changes nothing.
    code, _, _ = curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", unsub)
    assert code == 200 and len(events(d, "unsubscribe")) == 1
    d.advance("6d")
    time.sleep(1)
    assert len(d.messages()) == 1, [m["Subject"] for m in d.messages()]


def raw_http(port, data, timeout=5.0, chunks=None):
    """Sends data (or each of chunks, 0.1 s apart) and returns all the server answered until
    it closed the connection (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for c in (chunks or [data]):
            try:
                s.sendall(c)
            except (BrokenPipeError, ConnectionResetError):
                break
            if chunks:
                time.sleep(0.1)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def statuses(answer):
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def test_hostile_http_is_answered_or_dropped(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path, tracking={"request_timeout": "2s"})
    u = urls(first_message(d))
    unsub = "/u/" + u["unsub"][0].rsplit("/", 1)[1]
    port = d.http_port
    smuggle = [
        b"POST " + unsub.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
        b"POST " + unsub.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
        b"Content-Length: 44\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n"
        b"0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b" Content-Length: 3\r\n\r\n",
    ]
    for req in smuggle:
        # One 400 and the connection closes: no second request is ever served.
        assert statuses(raw_http(port, req)) == [400], req
    big = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert statuses(raw_http(port, big)) == [431]
    body = b"x" * 5000
    assert statuses(raw_http(port, b"POST " + unsub.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                              b"Content-Length: 5000\r\n\r\n" + body)) == [413]
    chunked = b"".join(b"400\r\n" + b"x" * 1024 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    assert statuses(raw_http(port, b"POST " + unsub.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + chunked)) == [413]
    # Pipelining: three requests in one write, three answers in order, then close.
    three = (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
             b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"
             b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert statuses(raw_http(port, three)) == [200, 404, 200]
    # Slowloris: a byte every 0.1 s does not extend the 2 s deadline of the request.
    start_t = time.monotonic()
    slow = [bytes([c]) for c in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 60]
    answer = raw_http(port, None, timeout=15, chunks=slow)
    took = time.monotonic() - start_t
    assert statuses(answer) == [408] and took < 9, (answer, took)
    # Nothing of that reached the database, and the daemon still serves and answers.
    assert lead(d)["status"] == "active" and not events(d, "unsubscribe")
    assert curl(f"{d.base_url}/healthz")[0] == 200
    assert d.stop() == 0


def test_many_idle_connections_and_the_cap(daemon_factory, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 10000 + 200
    if hard < need:
        pytest.skip(f"needs {need} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    d = start(daemon_factory, tmp_path)
    u = urls(first_message(d))
    d.advance("1h")
    idle = []
    try:
        for _ in range(10000):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", d.http_port))
            except BlockingIOError:
                pass
            idle.append(s)
        # Some idle ones send half a request, some garbage that must not stall the loop.
        for s in idle[:100]:
            try:
                s.send(b"GET /o/")
            except OSError:
                pass
        t0 = time.monotonic()
        assert d.ctl("status") is not None
        code, _, ctype = curl("-A", FIREFOX, "--max-time", "10", u["open"][0])
        took = time.monotonic() - t0
        assert (code, ctype) == (200, "image/gif") and took < 10, took

        def conns():
            m = subprocess.run(["curl", "-sS", f"{d.base_url}/metrics"],
                               capture_output=True, text=True).stdout
            return int(re.search(r"^dripd_http_connections (\d+)$", m, re.M).group(1))
        # All 10,000 held at once (SYNs past the listen backlog are retried by the kernel).
        wait_for(lambda: conns() >= 10000, 20, "10,000 connections held")
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    wait_for(lambda: events(d, "open"), 5, "the open")


def test_past_the_connection_cap_new_connections_close_at_once(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path, tracking={"max_connections": 20})
    held = [socket.create_connection(("127.0.0.1", d.http_port)) for _ in range(20)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", d.http_port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            got = extra.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b""  # closed without an answer
        extra.close()
    finally:
        for s in held:
            s.close()
    wait_for(lambda: curl(f"{d.base_url}/healthz")[0] == 200, 5, "service after release")
    metrics = subprocess.run(["curl", "-sS", f"{d.base_url}/metrics"], capture_output=True,
                             text=True).stdout
    assert re.search(r"^dripd_http_connections_refused_total [1-9]", metrics, re.M)


def test_metrics_and_healthz(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path)
    u = urls(first_message(d))
    d.advance("1h")
    curl("-A", FIREFOX, u["open"][0])
    wait_for(lambda: events(d, "open"), 5, "the open")
    r = subprocess.run(["curl", "-sS", "-i", f"{d.base_url}/healthz"], capture_output=True,
                       text=True)
    assert r.stdout.startswith("HTTP/1.1 200") and r.stdout.endswith("ok\n")
    m = subprocess.run(["curl", "-sS", f"{d.base_url}/metrics"], capture_output=True,
                       text=True).stdout
    for line in ['dripd_events_total{kind="sent"} 1', 'dripd_opens_total{person="true"} 1',
                 'dripd_stage_leads{stage="awareness"} 1', 'dripd_queue_touches{state="pending"} 1',
                 "# TYPE dripd_loop_lag_seconds gauge", 'dripd_clicks_total{person="false"} 0']:
        assert line in m, (line, m)
    assert curl("-X", "DELETE", f"{d.base_url}/healthz")[0] == 405


class Landing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"<html><body><h1 id='landed'>{self.path}</h1></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def landing():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Landing)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_chromium_loads_the_pixel_follows_a_link_and_unsubscribes_only_by_button(
        daemon_factory, tmp_path, landing, chromium):
    from selenium.webdriver.common.by import By
    d = start(daemon_factory, tmp_path, landing=landing)
    msg = first_message(d)
    u = urls(msg)
    d.advance("1h")
    page = tmp_path / "message.html"
    page.write_text(u["html"])
    chromium.get(page.as_uri())
    # The pixel loaded: an open is recorded (headless Chromium is not counted as a person).
    wait_for(lambda: events(d, "open"), 10, "the pixel's open")
    assert events(d, "open")[0][2]["machine"] == "scanner or script user agent"
    chromium.find_element(By.LINK_TEXT, "the guide").click()
    wait_for(lambda: "/guide" in chromium.current_url, 10, "the redirect to the landing page")
    assert chromium.find_element(By.ID, "landed").text == "/guide"
    wait_for(lambda: events(d, "click"), 10, "the click")
    # The unsubscribe page: opening it changes nothing; the button does.
    chromium.get(u["unsub"][0])
    assert "maya@example.org" in chromium.find_element(By.ID, "email").text
    time.sleep(0.5)
    assert lead(d)["status"] == "active"
    chromium.find_element(By.ID, "unsubscribe").click()
    wait_for(lambda: "You are unsubscribed" in chromium.page_source, 10, "the confirmation")
    assert lead(d)["status"] == "unsubscribed"
    assert events(d, "unsubscribe")[0][2]["via"] == "unsubscribe page"


def test_valgrind_finds_no_leak_with_tracking_traffic_and_open_connections(daemon_factory,
                                                                          tmp_path):
    from pathlib import Path
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is not installed (.ci/install-deps installs it)"
    plain = Path(os.environ.get("DRIPD_PLAIN_BUILD", Path(__file__).parents[2] / "build"))
    content = write_content(tmp_path / "content-v", content_files())
    from conftest import free_port
    port = free_port()
    d = daemon_factory("v", content=content,
                       tracking={"listen": f"127.0.0.1:{port}",
                                 "base_url": f"http://127.0.0.1:{port}"})
    d.start(binary=plain / "dripd",
            prefix=(valgrind, "--quiet", "--leak-check=full",
                    "--show-leak-kinds=definite,indirect,possible",
                    "--errors-for-leak-kinds=definite,indirect,possible",
                    "--error-exitcode=99"))
    d.ctl("lead", "add", "maya@example.org")
    u = urls(d.wait_messages(1, timeout=30)[0])
    d.advance("1h")
    curl("-A", FIREFOX, u["open"][0])
    curl("-A", FIREFOX, u["click"][0])
    curl(u["unsub"][0])
    curl(f"{d.base_url}/metrics")
    raw_http(port, b"GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n")
    # Left open at shutdown: an idle connection, half a request, an unread answer.
    idle = socket.create_connection(("127.0.0.1", port))
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /o/abc HTTP/1.1\r\nHost:")
    curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", u["unsub"][0])
    curl("-A", FIREFOX, u["open"][0])  # its group commit is still due at SIGTERM
    code = d.stop(timeout=60)
    idle.close()
    half.close()
    assert code == 0, f"valgrind reported errors or leaks:\n{d.log_text()}"
    assert d.sql("SELECT status FROM leads")[0][0] == "unsubscribed"
    assert len(events(d, "open")) == 2
