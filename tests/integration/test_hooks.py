#!/usr/bin/python3
"""Webhooks against a real HTTP receiver on loopback (http.server in a thread of the test):
signatures, retries with the same delivery id, timeouts that never block the loop, deliveries
that survive a restart, give-ups recorded as error events, failed touches and handoffs."""
import hashlib
import hmac
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import free_port, wait_for
from test_skeleton import write_content
from test_smtp import ONE_STEP

NEW_SECRET = b"new-secret-0123456789abcdef"
OLD_SECRET = b"old-secret-0123456789abcdef"


def verify(secrets, header, body, tolerance=300):
    """What a receiver does (the README's snippet): t= within tolerance, v1= matches the
    HMAC-SHA256 of "t.body" under one of its secrets, compared in constant time."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    ts = int(parts["t"])
    if abs(time.time() - ts) > tolerance:
        return None
    for s in secrets:
        mac = hmac.new(s, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(mac, parts["v1"]):
            return s
    return None


class Receiver:
    """An HTTP server on a free loopback port. Each POST is recorded with its headers, body
    and the secret its signature verified under. `plan[path]` lists status codes to answer
    in turn (then 200); `down` answers 500 to everything; paths in `hang` wait until
    `release` is set."""

    def __init__(self):
        self.requests = []
        self.plan = {}
        self.down = False
        self.hang = set()
        self.release = threading.Event()
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                path = self.path
                if path in rec.hang and not rec.release.is_set():
                    rec.release.wait(30)
                with rec.lock:
                    if rec.down:
                        code = 500
                    elif rec.plan.get(path):
                        code = rec.plan[path].pop(0)
                    else:
                        code = 200
                    sig = self.headers.get("Dripd-Signature", "")
                    rec.requests.append({
                        "path": path, "code": code, "body": body,
                        "json": json.loads(body), "id": self.headers["Dripd-Delivery"],
                        "kind": self.headers["Dripd-Event"],
                        "attempt": int(self.headers["Dripd-Attempt"]),
                        "secret": verify([NEW_SECRET, OLD_SECRET], sig, body) if sig else None,
                        "sig": sig,
                        "at": time.monotonic()})
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (timeout) while we hung

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self, path=None, kind=None, code=None):
        with self.lock:
            return [r for r in self.requests if (path is None or r["path"] == path) and
                    (kind is None or r["kind"] == kind) and (code is None or r["code"] == code)]

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def hook_daemon(daemon_factory, tmp_path, hooks, **config):
    content = write_content(tmp_path / "content", ONE_STEP)
    secret = tmp_path / "hook.secret"
    # Rotation: the newest secret first signs; the old one stays for receivers not yet moved.
    secret.write_bytes(NEW_SECRET + b"\n" + OLD_SECRET + b"\n")
    for h in hooks:
        h.setdefault("secret_file", str(secret))
    d = daemon_factory(content=content, webhooks=hooks, **config)
    return d.start()


def test_webhooks_are_signed_and_a_500_is_retried_with_the_same_delivery_id(
        daemon_factory, tmp_path, receiver):
    receiver.plan["/h"] = [500]
    d = hook_daemon(daemon_factory, tmp_path, [
        {"url": receiver.url("/h"), "events": ["sent"], "retry_min": "1s"}])
    d.ctl("lead", "add", "maya@example.org", "--first-name", "Maya", "--company", "Acme")
    wait_for(lambda: receiver.got("/h", code=200), 15, "the retried POST to succeed")
    first, second = receiver.got("/h")
    assert (first["code"], second["code"]) == (500, 200)
    assert first["id"] == second["id"] and (first["attempt"], second["attempt"]) == (1, 2)
    assert first["body"] == second["body"]  # the payload is frozen when queued
    assert second["at"] - first["at"] >= 0.9, "the retry waited retry_min"
    assert first["secret"] == NEW_SECRET and second["secret"] == NEW_SECRET
    p = second["json"]
    assert p["delivery_id"] == second["id"]
    assert p["event"]["kind"] == "sent" and p["event"]["id"] > 0
    assert p["lead"]["email"] == "maya@example.org" and p["lead"]["company"] == "Acme"
    assert p["touch"]["sequence"] == "hello" and p["touch"]["step"] == "hi"
    assert p["touch"]["message_id"]
    # Only the kinds it subscribes to: no other event reached it.
    assert {r["kind"] for r in receiver.requests} == {"sent"}
    wait_for(lambda: d.ctl("status")["webhooks"]["waiting"] == 0, 5, "an empty outbox")
    # A tampered body does not verify.
    assert verify([NEW_SECRET], f"t={int(time.time())},v1=00", second["body"]) is None
    assert d.stop() == 0


def test_a_hanging_endpoint_times_out_and_blocks_neither_the_loop_nor_others(
        daemon_factory, tmp_path, receiver):
    receiver.hang.add("/hang")
    d = hook_daemon(daemon_factory, tmp_path, [
        {"url": receiver.url("/hang"), "events": ["sent"], "timeout": "3s",
         "retry_min": "1s", "concurrency": 1},
        {"url": receiver.url("/ok"), "events": ["sent"]}])
    for i in range(3):
        d.ctl("lead", "add", f"l{i}@example.org")
    wait_for(lambda: len(receiver.got("/ok")) == 3, 10, "3 POSTs to the healthy endpoint")
    # The hanging endpoint holds its one slot; the control socket keeps answering fast.
    assert len(receiver.got("/hang")) == 0
    worst = 0.0
    for _ in range(10):
        t0 = time.monotonic()
        st = d.ctl("status")
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.2)
    assert worst < 1.0, f"dripctl status took {worst:.2f}s while a webhook hung"
    assert st["webhooks"]["in_flight"] == 1
    wait_for(lambda: "timed out" in d.log_text(), 10, "the webhook timeout in the log")
    assert d.ctl("status")["webhooks"]["retrying"] >= 1
    receiver.release.set()
    wait_for(lambda: len({r["id"] for r in receiver.got("/hang", code=200)}) == 3, 20,
             "all 3 deliveries to the endpoint once it answers")
    wait_for(lambda: d.ctl("status")["webhooks"]["waiting"] == 0, 10, "an empty outbox")
    assert d.stop() == 0


@pytest.mark.parametrize("how", ["sigterm", "kill -9"])
def test_deliveries_outstanding_at_a_restart_go_out_after_it(daemon_factory, tmp_path,
                                                             receiver, how):
    receiver.down = True
    d = hook_daemon(daemon_factory, tmp_path, [
        {"url": receiver.url("/h"), "events": ["sent"], "retry_min": "1s", "retry_max": "2s"}])
    for i in range(6):
        d.ctl("lead", "add", f"l{i}@example.org")
    wait_for(lambda: d.ctl("status")["webhooks"]["waiting"] == 6, 10, "6 queued deliveries")
    wait_for(lambda: d.ctl("status")["webhooks"]["retrying"] >= 1, 10, "a failed attempt")
    if how == "sigterm":
        assert d.stop() == 0
    else:
        d.kill()
    assert d.sql("SELECT count(*) FROM hook_outbox")[0][0] == 6
    receiver.down = False
    d.start()
    wait_for(lambda: len({r["id"] for r in receiver.got("/h", code=200)}) == 6, 20,
             "6 deliveries after the restart")
    ok = receiver.got("/h", code=200)
    by_event = {}
    for r in receiver.got("/h"):
        by_event.setdefault(r["json"]["event"]["id"], set()).add(r["id"])
    # None lost: every sent event arrived; duplicates only ever under the same delivery id.
    sent = {row[0] for row in d.sql("SELECT id FROM events WHERE kind = 'sent'")}
    assert set(by_event) == sent and len(sent) == 6
    assert all(len(ids) == 1 for ids in by_event.values()), by_event
    assert len(ok) >= 6
    wait_for(lambda: d.ctl("status")["webhooks"]["waiting"] == 0, 10, "an empty outbox")
    assert d.stop() == 0


def test_a_failed_touch_and_a_webhook_give_up_are_delivered_as_events(daemon_factory,
                                                                      tmp_path, receiver):
    receiver.plan["/dead"] = [500] * 100
    d = hook_daemon(daemon_factory, tmp_path, [
        {"url": receiver.url("/crm"), "events": ["failed", "error"]},
        {"url": receiver.url("/dead"), "events": ["failed", "error"], "retry_min": "10m",
         "give_up": "1h"}],
        delivery={"url": f"smtp://127.0.0.1:{free_port()}", "from": "Ana <ana@example.com>",
                  "retry_min": "10m", "retry_max": "1h", "give_up": "3h",
                  "connect_timeout": "2s", "max_connections": 1})
    d.ctl("lead", "add", "nobody@example.org")
    for _ in range(10):
        d.advance("1h")
        time.sleep(0.5)
        if receiver.got("/crm", kind="failed"):
            break
    wait_for(lambda: receiver.got("/crm", kind="failed"), 10, "the failed touch at the CRM")
    failed = receiver.got("/crm", kind="failed")[0]["json"]
    assert failed["lead"]["email"] == "nobody@example.org"
    assert failed["touch"]["state"] == "failed" and failed["touch"]["step"] == "hi"
    for _ in range(4):
        d.advance("30m")
        time.sleep(0.5)
    wait_for(lambda: receiver.got("/crm", kind="error"), 10, "the give-up at the CRM")
    err = receiver.got("/crm", kind="error")[0]["json"]["event"]["detail"]
    assert err["reason"] == "webhook gave up" and err["webhook"] == receiver.url("/dead")
    assert err["event_kind"] == "failed" and err["attempts"] >= 2
    # The endpoint that gave up is not sent the record of its own give-up.
    assert not receiver.got("/dead", kind="error")
    kinds = [e["kind"] for e in d.ctl("lead", "show", "nobody@example.org")["events"]]
    assert kinds[-1] == "error"
    assert d.stop() == 0


def test_a_handoff_carries_the_lead_and_the_reply(daemon_factory, tmp_path, receiver):
    d = hook_daemon(daemon_factory, tmp_path, [
        {"url": receiver.url("/crm"), "events": ["handoff"]}])
    d.ctl("lead", "add", "maya@example.org", "--first-name", "Maya")
    d.ctl("event", "maya@example.org", "reply", "--detail",
          json.dumps({"from": "maya@example.org", "subject": "Re: Hi Maya",
                      "text": "Call me on Tuesday"}))
    wait_for(lambda: receiver.got("/crm", kind="handoff"), 10, "the handoff webhook")
    p = receiver.got("/crm", kind="handoff")[0]["json"]
    assert p["lead"]["email"] == "maya@example.org" and p["lead"]["status"] == "handoff"
    assert p["reply"]["subject"] == "Re: Hi Maya" and p["reply"]["text"] == "Call me on Tuesday"
    assert d.stop() == 0


def test_a_webhook_secret_rotates_by_the_readme_procedure(daemon_factory, tmp_path, receiver):
    """README "Rotating the secret": the new secret on the first line of secret_file, the old
    one below, a reload; then the old line removed and another reload."""
    secret = tmp_path / "rotating.secret"
    secret.write_bytes(OLD_SECRET + b"\n")
    d = hook_daemon(daemon_factory, tmp_path, [
        {"url": receiver.url("/h"), "events": ["sent"], "secret_file": str(secret)}])

    def deliveries(n):
        wait_for(lambda: len(receiver.got("/h", code=200)) >= n, 15, f"{n} deliveries")
        return receiver.got("/h", code=200)

    def accepts(secrets, r):
        return verify(secrets, r["sig"], r["body"]) is not None

    d.ctl("lead", "add", "before@example.org")
    [first] = deliveries(1)
    assert accepts([OLD_SECRET], first) and not accepts([NEW_SECRET], first)

    # 1. Rotate: the new secret on top, the old one below; reload (dripctl, as SIGHUP).
    secret.write_bytes(NEW_SECRET + b"\n" + OLD_SECRET + b"\n")
    d.ctl("reload")
    d.ctl("lead", "add", "during@example.org")
    second = deliveries(2)[1]
    assert accepts([NEW_SECRET], second), "new deliveries are signed with the first line"
    assert not accepts([OLD_SECRET], second), "a receiver knowing only the old one refuses"
    assert all(accepts([NEW_SECRET, OLD_SECRET], r) for r in deliveries(2)), \
        "a receiver that knows both accepts every delivery, old and new"

    # A bad file (a secret under 16 bytes) is refused: the running secrets stay.
    secret.write_bytes(b"short\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeps its old secrets" in d.log_text(), 10, "the refusal in the log")
    d.ctl("lead", "add", "refused@example.org")
    assert accepts([NEW_SECRET], deliveries(3)[2])

    # 2. The receiving side has switched: drop the old line, reload (SIGHUP this time).
    secret.write_bytes(NEW_SECRET + b"\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.log_text().count("dripd: reloaded") >= 3, 10, "the third reload")
    d.ctl("lead", "add", "after@example.org")
    last = deliveries(4)[3]
    assert accepts([NEW_SECRET], last) and not accepts([OLD_SECRET], last)
    assert [r["json"]["lead"]["email"] for r in deliveries(4)] == [
        "before@example.org", "during@example.org", "refused@example.org", "after@example.org"]
    assert d.stop() == 0


def test_bad_webhook_config_is_refused_with_its_line(tmp_path):
    import subprocess
    from conftest import DRIPD
    cfg = tmp_path / "dripd.json"
    cfg.write_text('{\n"webhooks": [\n {"url": "http://127.0.0.1:9/a"},\n'
                   ' {"url": "http://127.0.0.1:9/a"}]\n}\n')
    r = subprocess.run([str(DRIPD), "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{cfg}:4:" in r.stderr and "listed twice" in r.stderr, r.stderr
    cfg.write_text('{"webhooks": [{"url": "http://127.0.0.1:9/a",\n "timeout": "1x"}]}\n')
    r = subprocess.run([str(DRIPD), "check", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{cfg}:2:" in r.stderr and "timeout" in r.stderr, r.stderr


@pytest.mark.skipif(not os.environ.get("DRIPD_PLAIN_BUILD"), reason="needs DRIPD_PLAIN_BUILD")
def test_valgrind_finds_no_leak_with_webhooks_in_flight_at_exit(daemon_factory, tmp_path,
                                                                receiver):
    import shutil
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is not installed (.ci/install-deps installs it)"
    plain = Path(os.environ["DRIPD_PLAIN_BUILD"]) / "dripd"
    receiver.hang.add("/hang")
    receiver.plan["/h"] = [500]
    content = write_content(tmp_path / "content", ONE_STEP)
    secret = tmp_path / "hook.secret"
    secret.write_bytes(NEW_SECRET + b"\n")
    d = daemon_factory(content=content, webhooks=[
        {"url": receiver.url("/h"), "events": ["sent"], "retry_min": "1s",
         "secret_file": str(secret)},
        {"url": receiver.url("/hang"), "events": ["sent"], "timeout": "60s"}])
    d.start(binary=plain, prefix=(valgrind, "--quiet", "--leak-check=full",
                                  "--show-leak-kinds=definite,indirect,possible",
                                  "--errors-for-leak-kinds=definite,indirect,possible",
                                  "--error-exitcode=99"))
    for i in range(3):
        d.ctl("lead", "add", f"v{i}@example.com")
    wait_for(lambda: len({r["id"] for r in receiver.got("/h", code=200)}) == 3, 60,
             "three deliveries, one after a retry")
    d.proc.send_signal(signal.SIGHUP)  # re-reads the secret files
    wait_for(lambda: "reloaded" in d.log_text(), 30, "the reload")
    code = d.stop(timeout=60)  # the /hang POSTs are still in flight
    assert code == 0, f"valgrind reported errors or leaks:\n{d.log_text()}"
    assert "stay queued for the next start" in d.log_text()
