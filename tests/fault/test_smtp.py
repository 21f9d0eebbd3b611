#!/usr/bin/python3
"""The SMTP server misbehaving, through smtp-sink's own fault flags: temporary failures at
each command defer with a growing, capped backoff; a 5xx at RCPT bounces and suppresses for
good; a 421 greeting defers; a hang-up after the final dot is uncertain and never re-sent; a
stall times out while the control socket and the tracking listener keep answering; a relay
down past the give-up age fails the touch with an event, a count in `dripctl status`, a
metric and a webhook; a burst of 421 greetings pauses the account."""
import json
import re
import socket
import time

import pytest

from conftest import postfix_sink, smtp_daemon, wait_for, write_content  # noqa: F401

ONE_STEP = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"]}),
    "sequences/s.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "one", "delay": "0d", "template": "one.md"},
                  {"id": "two", "delay": "1d", "template": "two.md"}]}),
    "templates/one.md": "---\nsubject: One\n---\nFirst.\n",
    "templates/two.md": "---\nsubject: Two\n---\nSecond.\n",
}


def touch(d, email="lead@example.org", step="one"):
    rows = d.sql("SELECT t.state, t.attempts, t.due_at, t.updated_at, t.last_error FROM touches t "
                 "JOIN leads l ON l.id = t.lead_id WHERE l.email = ? AND t.step = ?", email, step)
    if not rows:
        return None
    state, attempts, due, updated, error = rows[0]
    return {"state": state, "attempts": attempts, "wait": due - updated, "error": error}


def events(d, kind):
    return d.sql("SELECT detail FROM events WHERE kind = ?", kind)


def start(daemon_factory, tmp_path, url, **delivery):
    content = write_content(tmp_path / "content", ONE_STEP)
    d = smtp_daemon(daemon_factory, content, url, threads=2, **delivery)
    d.start()
    return d


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA", "."])
def test_4xx_defers_with_a_growing_capped_backoff(daemon_factory, tmp_path, postfix_sink,
                                                  command):
    sink = postfix_sink("-r", command)
    d = start(daemon_factory, tmp_path, sink.url, retry_min="1m", retry_max="4m")
    d.ctl("lead", "add", "lead@example.org")
    waits = []
    for attempt in range(1, 6):
        t = wait_for(lambda: (lambda t: t and t["attempts"] == attempt and t["state"] == "pending"
                              and t)(touch(d)), 20, f"attempt {attempt} to be deferred")
        assert "450" in (t["error"] or ""), t
        waits.append(t["wait"])
        d.advance(f"{t['wait']}s")
    assert waits == [60, 120, 240, 240, 240], waits
    t = wait_for(lambda: (lambda t: t["attempts"] == 6 and t["state"] == "pending" and t)(
        touch(d)), 20, "attempt 6 to be deferred")
    assert len(events(d, "deferred")) == 6
    if command != ".":
        assert sink.count() == 0, "a message was dumped although the server refused it"
    # The server recovers: the next attempt goes, once.
    sink.restart(flags=[])
    d.advance("4m")
    wait_for(lambda: touch(d)["state"] == "sent", 20, "the touch to be sent after recovery")
    assert len([m for m in sink.messages() if m["subject"] == "One" and m["complete"]]) >= 1


def test_5xx_at_rcpt_bounces_suppresses_and_never_retries(daemon_factory, tmp_path,
                                                          postfix_sink):
    sink = postfix_sink("-f", "RCPT")
    d = start(daemon_factory, tmp_path, sink.url, retry_min="1m")
    d.ctl("lead", "add", "lead@example.org")
    wait_for(lambda: touch(d)["state"] == "bounced", 20, "a hard bounce")
    assert touch(d)["attempts"] == 1
    lead = d.ctl("lead", "show", "lead@example.org")["lead"]
    assert lead["status"] == "bounced", lead
    assert d.sql("SELECT count(*) FROM suppressions WHERE address = 'lead@example.org'") == [(1,)]
    # Never retried, and no later step: days later nothing more was attempted.
    sink.restart(flags=[])
    for _ in range(3):
        d.advance("2d")
    time.sleep(1.5)
    assert touch(d)["attempts"] == 1 and touch(d)["state"] == "bounced"
    assert touch(d, step="two") is None
    assert sink.count() == 0
    # Adding the address again does not mail it either.
    d.ctl_raw("lead", "enroll", "lead@example.org", "s")
    d.advance("1d")
    time.sleep(1)
    assert sink.count() == 0


def test_421_at_greeting_defers(daemon_factory, tmp_path, postfix_sink):
    sink = postfix_sink("-Q", "CONNECT")
    d = start(daemon_factory, tmp_path, sink.url, retry_min="5m")
    d.ctl("lead", "add", "lead@example.org")
    t = wait_for(lambda: (lambda t: t["attempts"] >= 1 and t["state"] == "pending" and t)(
        touch(d)), 20, "the touch to be deferred")
    assert t["wait"] == 300 and "421" in t["error"], t
    sink.restart(flags=[])
    d.advance("5m")
    wait_for(lambda: touch(d)["state"] == "sent", 20, "the touch to be sent")
    assert len(sink.messages()) == 1


def test_a_burst_of_421_greetings_pauses_the_account_then_it_resumes(daemon_factory, tmp_path,
                                                                     postfix_sink):
    sink = postfix_sink("-Q", "CONNECT")
    content = write_content(tmp_path / "content", ONE_STEP)
    d = smtp_daemon(daemon_factory, content, sink.url, threads=2, retry_min="5m")
    d.config["governor"] = {"min_samples": 4, "slow_deferral_rate": 0.25,
                            "pause_deferral_rate": 0.5, "pause": "30m", "recover": "30m",
                            "slow_interval": "1m"}
    d.write_config()
    d.start()

    def account():
        return next(a for a in d.ctl("status")["accounts"] if a["name"] == "default")
    for i in range(4):
        d.ctl("lead", "add", f"lead{i}@example.org")
    wait_for(lambda: account()["governor"]["state"] == "paused", 20, "the account paused")
    gov = account()["governor"]
    assert "deferral rate" in gov["reason"], gov
    assert all("421" in (touch(d, f"lead{i}@example.org")["error"] or "") for i in range(4))
    # Paused: the retries falling due within the pause do not reach the server.
    sink.restart(flags=[])
    d.advance("5m")
    time.sleep(1.5)
    assert sink.messages() == [], "mail went out while the account was paused"
    assert account()["governor"]["state"] == "paused"
    # After the pause: slow, one message at a time, then all of them.
    d.advance("30m")
    wait_for(lambda: len(sink.messages()) >= 1, 20, "the first send after the pause")
    for _ in range(6):
        if len(sink.messages()) == 4:
            break
        d.advance("1m")
        time.sleep(1.0)
    wait_for(lambda: len(sink.messages()) == 4, 20, "all four once the account resumed")
    assert all(touch(d, f"lead{i}@example.org")["state"] == "sent" for i in range(4))


def test_hang_up_after_the_final_dot_is_uncertain_and_never_resent(daemon_factory, tmp_path,
                                                                   postfix_sink):
    sink = postfix_sink("-q", ".")
    d = start(daemon_factory, tmp_path, sink.url, retry_min="1m")
    d.ctl("lead", "add", "lead@example.org")
    wait_for(lambda: touch(d)["state"] == "uncertain", 20, "the touch to be uncertain")
    listed = d.ctl("touch", "list")["touches"]
    assert [t["state"] for t in listed] == ["uncertain"], listed
    assert len(events(d, "uncertain")) == 1
    sink.restart(flags=[])
    d.advance("1d")
    time.sleep(1.5)
    assert touch(d)["state"] == "uncertain" and touch(d)["attempts"] == 1
    assert touch(d, step="two") is None  # the drip waits for a person to resolve it


def control_answer_time(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(d.socket))
    t0 = time.monotonic()
    s.sendall(b'{"v":1,"id":1,"cmd":"status","args":{}}\n')
    line = s.makefile("rb").readline()
    s.close()
    assert json.loads(line)["ok"] is True
    return time.monotonic() - t0


def http_answer_time(port, target):
    """Seconds for one GET of `target` on the tracking listener; asserts a 200."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: t\r\nUser-Agent: "
                  b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
                  b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            answer += b
    took = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    return took


def open_token(sink):
    """The pixel's token in the one message the sink accepted."""
    import email
    from email import policy
    m = sink.messages()[0]
    raw = b"\r\n".join(m["headers"]) + b"\r\n\r\n" + b"\r\n".join(m["body"])
    html = email.message_from_bytes(raw, policy=policy.default).get_body(
        preferencelist=("html",)).get_content()
    return re.search(r'src="http://127\.0\.0\.1:\d+/o/([A-Za-z0-9_-]+)"', html).group(1)


@pytest.mark.parametrize("stall,outcome", [(["-w", "60"], "pending"),
                                           (["-W", ".:60"], "uncertain")])
def test_a_stalled_server_times_out_while_control_and_tracking_answer(
        daemon_factory, tmp_path, postfix_sink, stall, outcome):
    sink = postfix_sink()
    files = dict(ONE_STEP)
    files["sequences/s.json"] = json.dumps(dict(json.loads(ONE_STEP["sequences/s.json"]),
                                                pixel=True))
    content = write_content(tmp_path / "content", files)
    d = smtp_daemon(daemon_factory, content, sink.url, threads=2, retry_min="1h",
                    reply_timeout="3s")
    d.config["tracking"]["base_url"] = d.base_url
    d.write_config()
    d.start()
    # One message goes through first, for a real pixel to fetch during the stall.
    d.ctl("lead", "add", "first@example.org")
    wait_for(lambda: touch(d, "first@example.org")["state"] == "sent", 20, "the first send")
    pixel = "/o/" + open_token(sink)
    sink.restart(flags=stall)
    for i in range(4):
        d.ctl("lead", "add", f"lead{i}@example.org")
    wait_for(lambda: d.ctl("status")["touches"]["sending"] >= 1, 10, "a stalled transfer")
    slowest = {"control": 0.0, "healthz": 0.0, "pixel": 0.0}
    for _ in range(10):
        slowest["control"] = max(slowest["control"], control_answer_time(d))
        slowest["healthz"] = max(slowest["healthz"], http_answer_time(d.http_port, "/healthz"))
        slowest["pixel"] = max(slowest["pixel"], http_answer_time(d.http_port, pixel))
    assert d.ctl("status")["touches"]["sending"] >= 1, "the stall ended before the checks"
    assert max(slowest.values()) < 1.0, f"answers during a stall took {slowest}"
    start_t = time.monotonic()
    wait_for(lambda: touch(d, "lead0@example.org")["state"] == outcome, 30,
             f"the stalled touch to become {outcome}")
    assert time.monotonic() - start_t < 20
    t = touch(d, "lead0@example.org")
    assert "timeout" in (t["error"] or "").lower() or "timed out" in (t["error"] or "").lower(), t
    # The pixels fetched during the stall were recorded once the group commit ran.
    wait_for(lambda: len(events(d, "open")) == 10, 5, "the ten opens recorded")


class Receiver:
    """A webhook receiver on a free loopback port: records each POST's event and JSON."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from conftest import free_port
        self.got = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rec.got.append((self.headers["Dripd-Event"], json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        port = free_port()
        self.url = f"http://127.0.0.1:{port}/hook"
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_relay_down_past_the_give_up_age_fails_the_touch(daemon_factory, tmp_path, receiver):
    from conftest import free_port
    content = write_content(tmp_path / "content", ONE_STEP)
    d = smtp_daemon(daemon_factory, content, f"smtp://127.0.0.1:{free_port()}", threads=2,
                    retry_min="10m", retry_max="1h", give_up="3h")
    d.config["webhooks"] = [{"url": receiver.url, "events": ["failed"]}]
    d.write_config()
    d.start()
    d.ctl("lead", "add", "lead@example.org")
    for _ in range(12):
        t = wait_for(lambda: (lambda t: t["state"] != "sending" and t["attempts"] >= 1 and t)(
            touch(d)), 20, "an attempt")
        if t["state"] == "failed":
            break
        d.advance(f"{t['wait']}s")
        wait_for(lambda: touch(d)["attempts"] > t["attempts"] or touch(d)["state"] == "failed",
                 20, "the next attempt")
    t = touch(d)
    assert t["state"] == "failed", t
    assert 4 <= t["attempts"] <= 8, t
    failed = events(d, "failed")
    assert len(failed) == 1 and "gave up" in failed[0][0], failed
    assert d.ctl("status")["touches"]["failed"] == 1
    assert touch(d, step="two") is None
    # The same failure as a metric and as a webhook POST to the receiver.
    import urllib.request
    metrics = urllib.request.urlopen(f"{d.base_url}/metrics", timeout=5).read().decode()
    assert 'dripd_events_total{kind="failed"} 1' in metrics.splitlines(), \
        [ln for ln in metrics.splitlines() if ln.startswith("dripd_events_total")]
    wait_for(lambda: receiver.got, 10, "the failed webhook")
    assert [k for k, _ in receiver.got] == ["failed"], receiver.got
    body = receiver.got[0][1]
    assert body["lead"]["email"] == "lead@example.org", body
    assert body["touch"]["state"] == "failed" and body["touch"]["step"] == "one", body
