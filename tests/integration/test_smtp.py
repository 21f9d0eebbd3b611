#!/usr/bin/python3
"""SMTP delivery on the sender threads (libcurl opens the connections, the thread speaks
the envelope and the data), against a real aiosmtpd server on loopback: messages,
connection reuse, retries, bounces, dropped connections and stalls, with and without
PIPELINING."""
import json
import re
import subprocess
import time

import pytest

from conftest import DRIPD, SmtpSink, wait_for
from test_skeleton import write_content

# The server offers PIPELINING or not: dripd sends MAIL, RCPT and DATA in one write, or
# each alone, and every outcome must be the same.
BOTH_WAYS = pytest.mark.parametrize("smtp_sink", [False, True], ids=["one-by-one", "pipelined"],
                                    indirect=True)

ONE_STEP = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"],
                                "sender": {"company": "Northwind",
                                           "postal_address": "1 Quay, Bristol"}}),
    "sequences/hello.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "hi", "delay": "0d", "template": "hi.md"},
                  {"id": "again", "delay": "2d", "template": "again.md"}]}),
    "templates/hi.md": "---\nsubject: Hi {{first_name|there}}\n---\n"
                       "Hello [guide](https://example.com/g \"guide\").\n",
    "templates/again.md": "---\nsubject: Again\n---\nSecond.\n",
}


def used_pipelining(d, sink):
    """dripd logs each connection it opens, and whether the server offered PIPELINING."""
    connected = [line for line in d.log_text().splitlines() if "mailer: connected to" in line]
    assert connected, d.log_text()
    return all("(pipelining)" in line for line in connected) == sink.pipelining


def smtp_daemon(daemon_factory, tmp_path, sink, **delivery):
    content = write_content(tmp_path / "content", ONE_STEP)
    d = daemon_factory(content=content)
    d.config["delivery"] = {"url": sink.url, "from": "Ana Ruiz <ana@example.com>",
                            "max_connections": 2, **delivery}
    d.write_config()
    return d.start()


def touch_states(d, email):
    return {t["step"]: t["state"] for t in d.ctl("lead", "show", email)["touches"]}


@BOTH_WAYS
def test_messages_go_out_over_smtp_on_few_reused_connections(daemon_factory, tmp_path,
                                                             smtp_sink):
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink)
    for i in range(20):
        d.ctl("lead", "add", f"l{i}@example.org", "--first-name", f"L{i}")
    wait_for(lambda: len(smtp_sink.messages) == 20, 20, "20 messages at the SMTP server")
    msgs = smtp_sink.parsed()  # the strict policy refuses malformed headers
    assert sorted(m["To"].addresses[0].addr_spec for m in msgs) == \
        sorted(f"l{i}@example.org" for i in range(20))
    for (mail_from, rcpts, raw), m in zip(smtp_sink.messages, msgs):
        assert mail_from == "ana@example.com" and rcpts == [m["To"].addresses[0].addr_spec]
        assert m["Subject"].startswith("Hi L") and m["List-Unsubscribe-Post"]
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    # Two sender threads, each keeping its connection: never more than two sessions.
    assert 1 <= len(smtp_sink.sessions) <= 2, smtp_sink.sessions
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == 20, 10, "20 sent touches")
    assert used_pipelining(d, smtp_sink)
    assert d.stop() == 0


@BOTH_WAYS
def test_a_4xx_defers_with_backoff_then_the_retry_is_delivered(daemon_factory, tmp_path,
                                                               smtp_sink):
    smtp_sink.rcpt_codes["slow@example.org"] = "451 4.7.1 try again later"
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink, retry_min="10m", retry_max="1h")
    d.ctl("lead", "add", "slow@example.org")
    wait_for(lambda: touch_states(d, "slow@example.org")["hi"] == "pending" and
             d.ctl("lead", "show", "slow@example.org")["touches"][0]["attempts"] == 1,
             10, "the first attempt to be deferred")
    shown = d.ctl("lead", "show", "slow@example.org")
    assert "451" in shown["touches"][0]["last_error"]
    assert [e["kind"] for e in shown["events"]][-1] == "deferred"
    # Not before the backoff: nine minutes on, still no second attempt.
    d.advance("9m")
    time.sleep(0.5)
    assert d.ctl("lead", "show", "slow@example.org")["touches"][0]["attempts"] == 1
    d.advance("1m")
    wait_for(lambda: d.ctl("lead", "show", "slow@example.org")["touches"][0]["attempts"] == 2,
             10, "the second attempt")
    # The second wait doubles: 20 minutes.
    d.advance("19m")
    time.sleep(0.5)
    assert d.ctl("lead", "show", "slow@example.org")["touches"][0]["attempts"] == 2
    del smtp_sink.rcpt_codes["slow@example.org"]
    d.advance("1m")
    wait_for(lambda: len(smtp_sink.messages) == 1, 10, "the retried message")
    wait_for(lambda: touch_states(d, "slow@example.org")["hi"] == "sent", 10, "sent")


@BOTH_WAYS
def test_a_5xx_at_rcpt_bounces_suppresses_and_is_never_retried(daemon_factory, tmp_path,
                                                                smtp_sink):
    smtp_sink.rcpt_codes["gone@example.org"] = "550 5.1.1 no such user"
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink)
    d.ctl("lead", "add", "gone@example.org")
    d.ctl("lead", "add", "here@example.org")
    wait_for(lambda: touch_states(d, "gone@example.org")["hi"] == "bounced", 10, "a bounce")
    shown = d.ctl("lead", "show", "gone@example.org")
    assert shown["lead"]["status"] == "bounced"
    bounce = [e for e in shown["events"] if e["kind"] == "bounce"]
    assert bounce and bounce[0]["detail"]["code"] == 550
    assert d.sql("SELECT reason FROM suppressions WHERE address = 'gone@example.org'") == \
        [("bounce",)]
    # The refused transaction was reset, and the next message still went.
    wait_for(lambda: touch_states(d, "here@example.org")["hi"] == "sent", 10, "the other lead")
    assert used_pipelining(d, smtp_sink)
    del smtp_sink.rcpt_codes["gone@example.org"]
    d.advance("10d")
    wait_for(lambda: touch_states(d, "here@example.org").get("again") == "sent", 10,
             "the other lead's second step")
    assert [r for _, r, _ in smtp_sink.messages].count(["gone@example.org"]) == 0
    assert len(touch_states(d, "gone@example.org")) == 1


@BOTH_WAYS
def test_a_5xx_at_mail_fails_the_touch_and_suppresses_nobody(daemon_factory, tmp_path,
                                                             smtp_sink):
    smtp_sink.mail_code = "553 5.7.1 sender not allowed"
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink)
    d.ctl("lead", "add", "maya@example.org")
    wait_for(lambda: touch_states(d, "maya@example.org")["hi"] == "failed", 10, "a failure")
    shown = d.ctl("lead", "show", "maya@example.org")
    assert "553" in shown["touches"][0]["last_error"], shown["touches"]
    assert shown["lead"]["status"] != "bounced"
    assert d.sql("SELECT count(*) FROM suppressions") == [(0,)]
    # The transaction was reset: once the relay takes the sender, the next lead goes.
    smtp_sink.mail_code = None
    d.ctl("lead", "add", "ravi@example.org")
    wait_for(lambda: touch_states(d, "ravi@example.org")["hi"] == "sent", 10, "the next lead")
    assert [r for _, r, _ in smtp_sink.messages] == [["ravi@example.org"]]


@BOTH_WAYS
def test_a_hang_up_after_the_data_leaves_the_touch_uncertain_never_resent(daemon_factory,
                                                                           tmp_path,
                                                                           smtp_sink):
    smtp_sink.drop_after_data.add("maybe@example.org")
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink)
    d.ctl("lead", "add", "maybe@example.org")
    wait_for(lambda: touch_states(d, "maybe@example.org")["hi"] == "uncertain", 10,
             "an uncertain touch")
    assert d.ctl("status")["touches"]["uncertain"] == 1
    smtp_sink.drop_after_data.clear()
    d.advance("10d")
    time.sleep(0.5)
    assert smtp_sink.messages == [], "an uncertain touch was sent again"


@BOTH_WAYS
def test_a_stalled_server_times_out_and_the_loop_keeps_answering(daemon_factory, tmp_path,
                                                                  smtp_sink):
    smtp_sink.stall = 4.0
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink, reply_timeout="2s")
    d.ctl("lead", "add", "stall@example.org")
    time.sleep(0.5)
    # While a sender thread waits for the server, the control socket answers at once.
    for _ in range(5):
        start = time.monotonic()
        d.ctl("status")
        assert time.monotonic() - start < 1.0
    wait_for(lambda: touch_states(d, "stall@example.org")["hi"] == "uncertain", 15,
             "the reply timeout to fire")
    assert "timeout" in d.ctl("lead", "show", "stall@example.org")["touches"][0][
        "last_error"].lower()


def test_metrics_split_the_sender_threads_time_between_sending_and_waiting(
        daemon_factory, tmp_path, smtp_sink):
    smtp_sink.stall = 0.5  # each message takes the thread at least half a second
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink, max_connections=1)
    for i in range(3):
        d.ctl("lead", "add", f"t{i}@example.org")
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == 3, 20, "three messages sent")
    text = subprocess.run(["curl", "-sS", f"{d.base_url}/metrics"], capture_output=True,
                          text=True, check=True).stdout
    got = {}
    for line in text.splitlines():
        m = re.fullmatch(r'(dripd_sender_\w+)\{account="default"(?:,activity="(\w+)")?\} (\S+)',
                         line)
        if m:
            got[m.group(2) or m.group(1)] = float(m.group(3))
    assert got.get("dripd_sender_jobs_total") == 3, text
    # Three stalls of 0.5 s on the one thread, and short hand-overs between them (the
    # three touches were due together).
    assert 1.45 <= got["sending"] < 10, got
    assert 0 <= got["between_jobs"] < 1.0, got
    assert "# TYPE dripd_sender_seconds_total counter" in text


def test_a_relay_that_is_down_defers_and_finally_gives_up(daemon_factory, tmp_path,
                                                           smtp_sink):
    smtp_sink.stop()  # nothing listens on its port any more
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink, retry_min="10m", retry_max="1h",
                    give_up="3h", connect_timeout="2s")
    d.ctl("lead", "add", "nobody@example.org")
    wait_for(lambda: d.ctl("lead", "show", "nobody@example.org")["touches"][0]["attempts"]
             >= 1 and touch_states(d, "nobody@example.org")["hi"] == "pending", 10,
             "a deferral")
    for _ in range(8):
        d.advance("1h")
        time.sleep(0.3)
        if touch_states(d, "nobody@example.org")["hi"] == "failed":
            break
    assert touch_states(d, "nobody@example.org")["hi"] == "failed"
    kinds = [e["kind"] for e in d.ctl("lead", "show", "nobody@example.org")["events"]]
    assert kinds.count("deferred") >= 2 and kinds[-1] == "failed"
    assert d.ctl("status")["touches"]["failed"] == 1
    smtp_sink.stop = lambda: None  # already stopped


def test_a_person_resolves_uncertain_touches_as_sent_or_resend(daemon_factory, tmp_path,
                                                               smtp_sink):
    smtp_sink.drop_after_data.update({"a@example.org", "b@example.org"})
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink)
    d.ctl("lead", "add", "a@example.org")
    d.ctl("lead", "add", "b@example.org")
    wait_for(lambda: len(d.ctl("touch", "list")["touches"]) == 2, 10, "two uncertain touches")
    listed = {t["email"]: t["id"] for t in d.ctl("touch", "list", "--state", "uncertain")[
        "touches"]}
    human = d.ctl_raw("touch", "list")
    assert human.returncode == 0 and "a@example.org" in human.stdout
    smtp_sink.drop_after_data.clear()
    # a's message did arrive (the person checked): sent, and the lead moves on.
    assert d.ctl("touch", "resolve", listed["a@example.org"], "sent")["state"] == "sent"
    # b's did not: it goes out again, once.
    assert d.ctl("touch", "resolve", listed["b@example.org"], "resend")["state"] == "pending"
    wait_for(lambda: len(smtp_sink.messages) == 1, 10, "b's message sent again")
    assert smtp_sink.messages[0][1] == ["b@example.org"]
    assert touch_states(d, "a@example.org") == {"hi": "sent", "again": "pending"}
    r = d.ctl_raw("touch", "resolve", listed["a@example.org"], "resend")
    assert r.returncode == 1 and "not uncertain" in r.stderr
    r = d.ctl_raw("touch", "resolve", "x1", "sent")
    assert r.returncode == 1 and "is a number" in r.stderr
    r = d.ctl_raw("touch", "list", "--state", "lost")
    assert r.returncode == 1 and "unknown touch state" in r.stderr
    assert d.ctl("touch", "list")["touches"] == []


def test_per_hour_and_per_day_caps_hold_back_the_rest(daemon_factory, tmp_path, smtp_sink):
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink, per_hour=3, per_day=5)
    for i in range(8):
        d.ctl("lead", "add", f"c{i}@example.org")
    wait_for(lambda: len(smtp_sink.messages) == 3, 10, "the first hour's three")
    time.sleep(0.5)
    assert len(smtp_sink.messages) == 3, "the hourly cap was exceeded"
    assert d.ctl("status")["touches"]["sent"] == 3
    # /metrics shows how full each cap is.
    text = subprocess.run(["curl", "-sS", f"{d.base_url}/metrics"], capture_output=True,
                          text=True, check=True).stdout
    caps = {(m.group(1), m.group(2)): int(m.group(3)) for m in re.finditer(
        r'^dripd_account_(sent|cap)\{account="default",window="(1h|24h)"\} (\d+)$', text,
        re.M)}
    assert caps == {("sent", "1h"): 3, ("sent", "24h"): 3, ("cap", "1h"): 3,
                    ("cap", "24h"): 5}, text
    d.advance("1h")
    wait_for(lambda: len(smtp_sink.messages) == 5, 10, "two more in the second hour")
    time.sleep(0.5)
    assert len(smtp_sink.messages) == 5, "the daily cap was exceeded"
    d.advance("23h")
    wait_for(lambda: len(smtp_sink.messages) == 8, 10, "the rest the next day")


def test_the_caps_count_what_the_database_holds_after_every_outcome(daemon_factory, tmp_path,
                                                                   smtp_sink):
    """The scheduler counts sends as it goes instead of asking SQL each pass: a send that
    was deferred, bounced or left uncertain stops counting, one a person resolves as sent
    counts, and a restart reads the same counts back."""
    smtp_sink.rcpt_codes["later@example.org"] = "451 4.7.1 try again later"
    smtp_sink.rcpt_codes["gone@example.org"] = "550 5.1.1 no such user"
    smtp_sink.drop_after_data.add("lost@example.org")
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink, per_hour=3, per_day=10,
                    retry_min="3h", retry_max="3h")
    for who in ("ok1", "later", "gone", "lost", "ok2"):
        d.ctl("lead", "add", f"{who}@example.org")

    def account():
        return d.ctl("status")["accounts"][0]

    def in_sql():
        return d.sql("SELECT count(*) FROM touches WHERE state IN ('sent', 'sending')")[0][0]

    wait_for(lambda: touch_states(d, "ok2@example.org")["hi"] == "sent" and
             touch_states(d, "lost@example.org")["hi"] == "uncertain" and
             touch_states(d, "gone@example.org")["hi"] == "bounced" and
             d.ctl("lead", "show", "later@example.org")["touches"][0]["attempts"] == 1,
             10, "every outcome recorded")
    assert touch_states(d, "later@example.org")["hi"] == "pending"
    assert account()["sent_last_hour"] == account()["sent_last_24h"] == in_sql() == 2
    smtp_sink.drop_after_data.clear()
    # A person says the lost one arrived: it counts, and the hour's cap of three is full.
    lost = d.ctl("touch", "list", "--state", "uncertain")["touches"][0]["id"]
    d.ctl("touch", "resolve", lost, "sent")
    assert account()["sent_last_hour"] == in_sql() == 3
    d.ctl("lead", "add", "ok3@example.org")
    time.sleep(0.5)
    assert "ok3@example.org" not in [m[1][0] for m in smtp_sink.messages], \
        "the cap missed a send resolved by a person"
    assert d.stop() == 0
    d.start()
    assert account()["sent_last_hour"] == account()["sent_last_24h"] == 3
    time.sleep(0.5)
    assert touch_states(d, "ok3@example.org")["hi"] == "pending", "a restart lost the count"
    d.advance("1h")
    wait_for(lambda: touch_states(d, "ok3@example.org")["hi"] == "sent", 10,
             "ok3's message once the hour turned")
    assert account()["sent_last_hour"] == 1 and account()["sent_last_24h"] == in_sql() == 4


def test_pause_holds_all_mail_and_survives_a_restart(daemon_factory, tmp_path, smtp_sink):
    d = smtp_daemon(daemon_factory, tmp_path, smtp_sink)
    assert d.ctl("pause")["paused"] is True
    d.ctl("lead", "add", "p@example.org")
    time.sleep(0.5)
    assert smtp_sink.messages == [] and d.ctl("status")["paused"] is True
    assert "(PAUSED)" in d.ctl_raw("status").stdout
    assert d.stop() == 0
    d.start()
    time.sleep(0.5)
    assert smtp_sink.messages == [], "a restart forgot the pause"
    d.ctl("resume")
    wait_for(lambda: len(smtp_sink.messages) == 1, 10, "the held message")
    # One lead paused: its mail waits while the others' goes.
    d.ctl("lead", "add", "q@example.org")
    wait_for(lambda: len(smtp_sink.messages) == 2, 10, "q's first message")
    assert d.ctl("lead", "pause", "q@example.org")["lead"]["status"] == "paused"
    d.advance("2d")
    wait_for(lambda: len(smtp_sink.messages) == 3, 10, "p's second message")
    time.sleep(0.5)
    assert len(smtp_sink.messages) == 3, "a paused lead's step went out"
    r = d.ctl_raw("lead", "pause", "q@example.org")
    assert r.returncode == 1 and "is paused, not active" in r.stderr
    d.ctl("lead", "resume", "q@example.org")
    wait_for(lambda: len(smtp_sink.messages) == 4, 10, "q's held step after resume")


@pytest.fixture
def tls_relay(tmp_path):
    """Starts SmtpSinks over TLS with a self-signed certificate for "localhost" (as a private
    CA's would be): tls_relay(tls, **kwargs) returns (sink, certificate path). Every one is
    stopped at the end."""
    cert, key = tmp_path / "relay-cert.pem", tmp_path / "relay-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    sinks = []

    def start(tls, **kwargs):
        sinks.append(SmtpSink(tls=tls, cert=(cert, key), **kwargs))
        return sinks[-1], cert
    yield start
    for sink in sinks:
        sink.stop()


def first_outcome(d, email):
    """The lead's first touch once its first attempt has an outcome (a last_error)."""
    wait_for(lambda: d.ctl("lead", "show", email)["touches"][0].get("last_error"), 10,
             "the first attempt's outcome")
    return d.ctl("lead", "show", email)["touches"][0]


def password_file(tmp_path, password):
    path = tmp_path / "sam.password"
    path.write_text(password + "\n")
    return str(path)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_tls_and_auth_with_a_private_ca_and_connections_reused(daemon_factory, tmp_path,
                                                               tls_relay, tls):
    sink, cert = tls_relay(tls, pipelining=True, logins={"sam": "s3cret"})
    d = smtp_daemon(daemon_factory, tmp_path, sink, username="sam",
                    password_file=password_file(tmp_path, "s3cret"), ca_file=str(cert))
    for i in range(6):
        d.ctl("lead", "add", f"t{i}@example.org")
    wait_for(lambda: len(sink.messages) == 6, 20, "6 messages over TLS")
    # Every transaction ran authenticated, over TLS, on at most the two threads'
    # connections: the session tickets TLS sends after the handshake do not look like a
    # server that hung up.
    assert sink.authenticated == [("sam", True)] * 6, sink.authenticated
    assert 1 <= len(sink.sessions) <= 2, sink.sessions
    assert used_pipelining(d, sink)
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == 6, 10, "6 sent touches")
    assert d.stop() == 0


def test_a_wrong_password_defers_and_never_bounces(daemon_factory, tmp_path, tls_relay):
    sink, cert = tls_relay("starttls", logins={"sam": "s3cret"})
    d = smtp_daemon(daemon_factory, tmp_path, sink, username="sam",
                    password_file=password_file(tmp_path, "wrong"), ca_file=str(cert))
    d.ctl("lead", "add", "maya@example.org")
    touch = first_outcome(d, "maya@example.org")
    assert touch["state"] == "pending", touch
    assert d.ctl("lead", "show", "maya@example.org")["lead"]["status"] == "active"
    assert "login denied" in touch["last_error"].lower(), touch
    assert d.sql("SELECT count(*) FROM suppressions") == [(0,)]
    assert sink.messages == []


def test_a_relay_certificate_nobody_trusts_is_refused(daemon_factory, tmp_path, tls_relay):
    sink, _ = tls_relay("implicit")
    d = smtp_daemon(daemon_factory, tmp_path, sink)  # no ca_file: the system's CAs
    d.ctl("lead", "add", "maya@example.org")
    touch = first_outcome(d, "maya@example.org")
    assert "certificate" in touch["last_error"].lower(), touch
    assert sink.messages == []


def test_a_ca_file_that_cannot_be_read_is_a_config_error(daemon_factory, tmp_path):
    d = daemon_factory()
    d.config["delivery"] = {"url": "smtp://127.0.0.1:25", "ca_file": str(tmp_path / "none.pem")}
    d.write_config()
    r = subprocess.run([str(DRIPD), "check", "-c", str(d.config_path)], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "ca_file" in r.stderr and "none.pem" in r.stderr, r.stderr
