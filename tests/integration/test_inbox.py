#!/usr/bin/python3
"""The inbox against a real Dovecot: replies, auto-replies, bounces and complaints dropped
into a Maildir end as their own events with the right effect on the lead; nothing is marked
read; a restart neither misses nor repeats; a server that goes away is retried."""
import datetime
import email.utils
import imaplib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, free_port, wait_for

FIXTURES = ROOT / "tests" / "fixtures" / "inbox"
USER = "dripdimap"
DOMAIN = "in.example.com"
PASSWORD = "imap-secret-pw"

DOVECOT_CONF = """\
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {user}
default_login_user = {user}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {folder}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
service auth {{
  user = {user}
}}
service auth-worker {{
  user = {user}
}}
service imap {{
  user = {user}
}}
"""


def imap_user():
    """The unprivileged user Dovecot runs as, created if missing."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(USER)


class Dovecot:
    """A Dovecot of its own on loopback, run as an unprivileged user in a temp folder, with
    one passwd-file user ("lead-inbox") and its Maildir."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.tls_port = 0
        self.pw = imap_user()
        self.maildir = folder / "home" / "Maildir"
        for sub in ("run", "state", "home/Maildir/new", "home/Maildir/cur",
                    "home/Maildir/tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.ssl = "ssl = no"
        self.write_conf()
        (folder / "passwd").write_text(
            f"lead-inbox:{{PLAIN}}{PASSWORD}:{self.pw.pw_uid}:{self.pw.pw_gid}::"
            f"{folder}/home\n")
        for root, dirs, files in os.walk(folder):
            for n in dirs + files:
                os.chown(os.path.join(root, n), self.pw.pw_uid, self.pw.pw_gid)
        os.chown(folder, self.pw.pw_uid, self.pw.pw_gid)
        self.proc = None
        self.seq = 0

    def enable_tls(self):
        """Serves imaps:// too, with a self-signed certificate for "localhost"; returns the
        certificate's path (a client trusts it through SSL_CERT_FILE)."""
        cert, key = self.folder / "cert.pem", self.folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True)
        for f in (cert, key):
            os.chown(f, self.pw.pw_uid, self.pw.pw_gid)
        self.tls_port = free_port()
        self.ssl = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
        self.write_conf()
        return cert

    def write_conf(self):
        conf = self.folder / "dovecot.conf"
        conf.write_text(DOVECOT_CONF.format(folder=self.folder, user=USER, port=self.port,
                                            tls_port=self.tls_port, ssl=self.ssl))
        os.chown(conf, self.pw.pw_uid, self.pw.pw_gid)

    def start(self):
        self.proc = subprocess.Popen(
            ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}",
             "--clear-groups", "/usr/sbin/dovecot", "-F", "-c",
             str(self.folder / "dovecot.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

        def listening():
            import socket
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return self.proc.poll() is not None
        wait_for(listening, 20, f"Dovecot on port {self.port}")
        assert self.proc.poll() is None, f"Dovecot exited:\n{self.log_text()}"
        return self

    def kill(self):
        """Kills Dovecot and all its processes at once, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            # Its children (imap-login, auth, imap) are in the same session.
            time.sleep(0.3)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log_text(self):
        p = self.folder / "dovecot.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def deliver(self, raw: bytes):
        """Drops one message into the Maildir the way an MDA does (tmp, then new)."""
        self.seq += 1
        name = f"{int(time.time())}.M{self.seq}P{os.getpid()}.test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, self.pw.pw_uid, self.pw.pw_gid)
        os.rename(tmp, self.maildir / "new" / name)

    def flags(self, folder="INBOX"):
        """Every message's flags in a folder, read over IMAP read-only."""
        m = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            m.login("lead-inbox", PASSWORD)
            typ, _ = m.select(folder, readonly=True)
            if typ != "OK":
                return None
            typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
            return [d.decode() for d in data if d]
        finally:
            m.logout()


@pytest.fixture
def dovecot():
    assert os.geteuid() == 0, "the inbox test runs its own Dovecot as a separate user: run as root"
    folder = Path(tempfile.mkdtemp(prefix="dripd-dovecot-"))
    os.chmod(folder, 0o755)
    server = Dovecot(folder)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def fill(name, lead, msgid="<none@example.com>", reply="", bounce="",
         sender="ana@example.com", subs=()):
    text = (FIXTURES / name).read_text()
    for k, v in (("{{LEAD}}", lead), ("{{MSGID}}", msgid), ("{{REPLY}}", reply),
                 ("{{BOUNCE}}", bounce), ("{{SENDER}}", sender)):
        text = text.replace(k, v)
    for a, b in subs:
        text = re.sub(a, b, text)
    return text.replace("\n", "\r\n").encode()


def inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path, **inbox):
    pwfile = tmp_path / "imap.password"
    pwfile.write_text(PASSWORD + "\n")
    cfg = {"url": f"imap://127.0.0.1:{dovecot.port}/INBOX", "username": "lead-inbox",
           "password_file": str(pwfile), "poll": "1s", "reply_domain": DOMAIN,
           "bounce_domain": DOMAIN}
    cfg.update(inbox)
    d = daemon_factory(inbox=cfg)
    d.config["delivery"] = {"url": smtp_sink.url, "from": "Ana Ruiz <ana@example.com>",
                            "max_connections": 2}
    d.write_config()
    return d


def watching(d, n=1):
    wait_for(lambda: d.log_text().count("inbox: watching") >= n or
             (d.proc.poll() is not None), 20, "the inbox to open the mailbox")
    assert d.proc.poll() is None, d.log_text()


def first_touch(d, smtp_sink, lead):
    """Adds a lead and returns (Message-ID, Reply-To, envelope sender) of its first touch."""
    d.ctl("lead", "add", lead, "--first-name", lead.split("@")[0].title())

    def sent():
        for mail_from, rcpts, raw in smtp_sink.messages:
            if lead in rcpts:
                return mail_from, raw
        return None
    mail_from, raw = wait_for(sent, 20, f"the first touch to {lead}")
    msg = email.message_from_bytes(raw)
    return msg["Message-ID"], msg["Reply-To"], mail_from


def events(d, lead):
    return [e["kind"] for e in d.ctl("lead", "show", lead)["events"]]


def show(d, lead):
    return d.ctl("lead", "show", lead)


def test_inbox_turns_real_mail_into_events_and_leaves_it_unread(daemon_factory, dovecot,
                                                                smtp_sink, tmp_path):
    d = inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path, soft_bounce_limit=2,
                     auto_reply_pause="5d")
    d.start()
    watching(d)
    leads = {k: f"{k}@example.org" for k in
             ("maya", "ravi", "olga", "greta", "hard", "exch", "soft", "arf", "unsub",
              "nul")}
    t = {k: first_touch(d, smtp_sink, v) for k, v in leads.items()}
    for k, (msgid, reply_to, mail_from) in t.items():
        assert reply_to.startswith("reply+") and reply_to.endswith("@" + DOMAIN), reply_to
        assert mail_from.startswith("bounce+") and mail_from.endswith("@" + DOMAIN), mail_from

    today = datetime.datetime.now(datetime.timezone.utc).date()
    back = today + datetime.timedelta(days=12)
    date_hdr = email.utils.format_datetime(datetime.datetime.now(datetime.timezone.utc))

    def mail(name, k, **kw):
        msgid, reply_to, mail_from = t[k]
        return fill(name, leads[k], msgid, reply_to, mail_from,
                    subs=[(r"(?m)^Date: .*$", "Date: " + date_hdr)] + kw.get("subs", []))

    dovecot.deliver(mail("reply_threaded.eml", "maya"))
    dovecot.deliver(mail("reply_plus_only.eml", "ravi"))
    dovecot.deliver(mail("ooo_outlook.eml", "olga", subs=[
        (r"12/07/2026", back.strftime("%m/%d/%Y"))]))
    dovecot.deliver(mail("ooo_gmail.eml", "greta"))
    dovecot.deliver(mail("dsn_postfix_hard.eml", "hard"))
    dovecot.deliver(mail("dsn_exchange_hard.eml", "exch"))
    dovecot.deliver(mail("dsn_exchange_soft.eml", "soft"))
    dovecot.deliver(mail("arf_complaint.eml", "arf"))
    dovecot.deliver(mail("unsubscribe.eml", "unsub"))
    dovecot.deliver(fill("stranger.eml", "nobody@example.net"))
    # Hostile: a 1 MB header, NUL bytes, a MIME boundary that never closes.
    hostile = (b"From: Evil <evil@bad.example>\r\nX-Trap: {12}\r\n d3 OK fake\r\n"
               b"* BYE fake\r\n)\r\nX-Big: " + b"a" * 1024 * 1024 +
               b"\r\nSubject: \x00\x00boom\r\nContent-Type: multipart/mixed; boundary=zz\r\n"
               b"\r\n--zz\r\nContent-Type: text/plain\r\n\r\n\x00{5}\r\n)\r\nd9 OK lies\r\n")
    dovecot.deliver(hostile)
    # A lead's reply whose body (fetched: it matches) is broken MIME with NUL bytes and
    # lines that look like IMAP responses inside its literal.
    dovecot.deliver(
        f"From: {leads['nul']}\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: multipart/mixed; boundary=qq\r\n\r\n--qq\r\n"
        f"Content-Type: text/plain\r\n\r\nStill interested.\x00\r\n"
        f"d4 OK [fake] done\r\n* 9 FETCH (UID 999 BODY[] {{3}}\r\n".encode())
    # After the hostile one, the inbox must still be in step: the next message counts.
    dovecot.deliver(mail("dsn_postfix_soft.eml", "soft"))

    try:
        wait_for(lambda: "bounce" in events(d, leads["soft"]), 60,
                 "the second soft bounce to suppress soft@")
    except AssertionError:
        raise AssertionError(d.log_text()[-6000:]) from None

    maya = show(d, leads["maya"])
    kinds = [e["kind"] for e in maya["events"]]
    assert "reply" in kinds and maya["lead"]["status"] == "handoff", (kinds, maya["lead"])
    reply = next(e for e in maya["events"] if e["kind"] == "reply")
    detail = reply["detail"]
    assert detail["from"] == leads["maya"] and detail["matched_by"] == "thread"
    assert detail["subject"] == "Re: Your pipeline review"
    assert "Could we talk on Thursday" in detail["excerpt"]
    assert "Most pipeline reviews" not in detail["excerpt"]  # the quote is cut

    ravi = show(d, leads["ravi"])
    reply = next(e for e in ravi["events"] if e["kind"] == "reply")
    assert reply["detail"]["matched_by"] == "token" and reply["detail"]["colleague"] is True
    assert ravi["lead"]["status"] == "handoff"

    olga = show(d, leads["olga"])
    auto = next(e for e in olga["events"] if e["kind"] == "auto_reply")
    assert auto["detail"]["return_date"] == back.isoformat(), auto
    assert olga["lead"]["status"] == "active" and "reply" not in events(d, leads["olga"])
    resume = datetime.datetime.combine(back + datetime.timedelta(days=1), datetime.time(),
                                       datetime.timezone.utc).timestamp()
    (due,), = d.sql("SELECT due_at FROM touches t JOIN leads l ON l.id = t.lead_id "
                    "WHERE l.email = ? AND t.state = 'pending'", leads["olga"])
    assert due == int(resume), (due, int(resume))

    greta = show(d, leads["greta"])
    assert "auto_reply" in [e["kind"] for e in greta["events"]]
    assert greta["lead"]["status"] == "active"

    for k in ("hard", "exch"):
        s = show(d, leads[k])
        b = next(e for e in s["events"] if e["kind"] == "bounce")
        assert b["detail"]["recipient"] == leads[k] and b["detail"]["status"].startswith("5.")
        assert s["lead"]["status"] == "bounced"
    soft = show(d, leads["soft"])
    assert [e["kind"] for e in soft["events"]].count("soft_bounce") == 2
    assert soft["lead"]["status"] == "bounced"
    arf = show(d, leads["arf"])
    assert "complaint" in [e["kind"] for e in arf["events"]]
    assert arf["lead"]["status"] == "complained"
    assert show(d, leads["unsub"])["lead"]["status"] == "unsubscribed"
    suppressed = {a for (a,) in d.sql("SELECT address FROM suppressions")}
    assert {leads["hard"], leads["exch"], leads["soft"], leads["arf"]} <= suppressed

    (unmatched,), = d.sql("SELECT unmatched FROM inbox_state")
    assert unmatched == 2, unmatched  # the stranger and the hostile message

    flags = dovecot.flags()
    nul = show(d, leads["nul"])
    reply = next(e for e in nul["events"] if e["kind"] == "reply")
    assert reply["detail"]["excerpt"].startswith("Still interested."), reply
    assert len(flags) == 13 and not any("\\Seen" in f for f in flags), flags
    assert d.proc.poll() is None


def test_a_restart_neither_misses_nor_repeats(daemon_factory, dovecot, smtp_sink, tmp_path):
    d = inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path)
    d.start()
    watching(d)
    lead = "kai@example.org"
    msgid, reply_to, mail_from = first_touch(d, smtp_sink, lead)
    dovecot.deliver(fill("ooo_gmail.eml", lead, msgid, reply_to, mail_from))
    wait_for(lambda: "auto_reply" in events(d, lead), 30, "the auto-reply")
    assert d.stop() == 0
    # Mail that arrives while dripd is down is read after the restart; nothing twice.
    dovecot.deliver(fill("reply_threaded.eml", lead, msgid, reply_to, mail_from))
    d.start()
    wait_for(lambda: "reply" in events(d, lead), 30, "the reply sent while dripd was down")
    time.sleep(3)  # three more polls
    kinds = events(d, lead)
    assert kinds.count("auto_reply") == 1 and kinds.count("reply") == 1, kinds
    assert d.log_text().count("inbox: watching") == 1  # the position was kept


def test_the_server_going_away_means_retries_not_a_stuck_loop(daemon_factory, dovecot,
                                                              smtp_sink, tmp_path):
    d = inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path)
    d.start()
    watching(d)
    lead = "lin@example.org"
    msgid, reply_to, mail_from = first_touch(d, smtp_sink, lead)
    dovecot.kill()
    wait_for(lambda: "retrying with backoff" in d.log_text(), 30, "the outage to be noticed")
    # The loop still answers while the IMAP server is gone.
    t0 = time.monotonic()
    assert d.ctl("status") is not None
    assert time.monotonic() - t0 < 5
    dovecot.deliver(fill("reply_threaded.eml", lead, msgid, reply_to, mail_from))
    time.sleep(2)
    dovecot.start()
    wait_for(lambda: "reply" in events(d, lead), 60, "the reply after the server came back")
    assert "reachable again" in d.log_text()
    assert d.log_text().count("retrying with backoff") == 1  # logged once per outage
    # Killed again in the middle of the polls: no crash, no repeat.
    for _ in range(3):
        dovecot.kill()
        time.sleep(0.7)
        dovecot.start()
    time.sleep(3)
    assert events(d, lead).count("reply") == 1
    assert d.stop() == 0


@pytest.mark.skipif(not os.environ.get("DRIPD_PLAIN_BUILD"), reason="needs DRIPD_PLAIN_BUILD")
def test_valgrind_finds_no_leak_with_the_inbox_reading(daemon_factory, dovecot, smtp_sink,
                                                       tmp_path):
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is not installed (.ci/install-deps installs it)"
    plain = Path(os.environ["DRIPD_PLAIN_BUILD"]) / "dripd"
    d = inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path)
    d.start(binary=plain, prefix=(valgrind, "--quiet", "--leak-check=full",
                                  "--show-leak-kinds=definite,indirect,possible",
                                  "--errors-for-leak-kinds=definite,indirect,possible",
                                  "--error-exitcode=99"))
    watching(d)
    lead = "val@example.org"
    msgid, reply_to, mail_from = first_touch(d, smtp_sink, lead)
    dovecot.deliver(fill("ooo_outlook.eml", lead, msgid, reply_to, mail_from))
    dovecot.deliver(fill("dsn_postfix_soft.eml", lead, msgid, reply_to, mail_from))
    dovecot.deliver(fill("stranger.eml", lead))
    dovecot.deliver(fill("reply_threaded.eml", lead, msgid, reply_to, mail_from))
    wait_for(lambda: "reply" in events(d, lead), 60, "the reply")
    code = d.stop(timeout=60)
    assert code == 0, f"valgrind reported errors or leaks:\n{d.log_text()}"


def test_handled_mail_can_be_moved_to_a_folder_and_stays_unread(daemon_factory, dovecot,
                                                                smtp_sink, tmp_path):
    d = inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path, move_to="Processed")
    d.start()
    watching(d)
    lead = "mo@example.org"
    msgid, reply_to, mail_from = first_touch(d, smtp_sink, lead)
    dovecot.deliver(fill("stranger.eml", lead))
    dovecot.deliver(fill("reply_threaded.eml", lead, msgid, reply_to, mail_from))
    wait_for(lambda: "reply" in events(d, lead), 30, "the reply")
    moved = wait_for(lambda: dovecot.flags("Processed"), 30, "the reply in Processed")
    assert len(moved) == 1 and "\\Seen" not in moved[0], moved
    left = dovecot.flags("INBOX")
    assert len(left) == 1 and "\\Seen" not in left[0], left  # the stranger stays
    time.sleep(2)
    assert events(d, lead).count("reply") == 1


def test_imaps_checks_the_certificate(daemon_factory, dovecot, smtp_sink, tmp_path,
                                      monkeypatch):
    cert = dovecot.enable_tls()
    dovecot.stop()
    dovecot.start()
    # Not trusted: the handshake fails, said once, retried; nothing read.
    d = inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path,
                     url=f"imaps://localhost:{dovecot.tls_port}/INBOX")
    d.start()
    wait_for(lambda: "retrying with backoff" in d.log_text(), 30, "the refused certificate")
    assert "certificate" in d.log_text() and "inbox: watching" not in d.log_text()
    assert d.stop() == 0
    # Trusted (as a CA bundle would make it): the mailbox is read over TLS.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    d2 = daemon_factory(name="d2", inbox={
        "url": f"imaps://localhost:{dovecot.tls_port}/INBOX", "username": "lead-inbox",
        "password_file": str(tmp_path / "imap.password"), "poll": "1s"})
    d2.config["delivery"] = {"url": smtp_sink.url, "from": "Ana Ruiz <ana@example.com>"}
    d2.write_config()
    d2.start()
    watching(d2)
    lead = "tls@example.org"
    msgid, _, _ = first_touch(d2, smtp_sink, lead)
    dovecot.deliver(fill("reply_threaded.eml", lead, msgid))
    wait_for(lambda: "reply" in events(d2, lead), 30, "the reply read over imaps")
    assert d2.stop() == 0


def vm_hwm_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_broken_mime_and_a_forged_bounce_tag(daemon_factory, dovecot, smtp_sink, tmp_path):
    """Issue 9's hostile inbox: each broken message from a lead is still that lead's reply;
    a 50 MB message is read in bounded pieces, never held whole; a DSN whose bounce
    tag was altered bounces nobody; and the inbox stays in step after all of them."""
    d = inbox_daemon(daemon_factory, dovecot, smtp_sink, tmp_path)
    d.start()
    watching(d)
    names = ("noboundary", "deep", "bad64", "bogus", "big", "victim", "after")
    leads = {k: f"{k}@example.org" for k in names}
    t = {k: first_touch(d, smtp_sink, v) for k, v in leads.items()}

    def head(k, extra=""):
        return (f"From: {leads[k]}\r\nTo: {t[k][1]}\r\nSubject: Re: {k}\r\n"
                f"MIME-Version: 1.0\r\n{extra}").encode()
    hwm_before = vm_hwm_kib(d.proc.pid)
    dovecot.deliver(head("noboundary", "Content-Type: multipart/mixed\r\n\r\n") +
                    b"Yes, call me.\r\n")
    deep = [head("deep", 'Content-Type: multipart/mixed; boundary="n0"\r\n\r\n')]
    deep += [f'--n{i}\r\nContent-Type: multipart/mixed; boundary="n{i + 1}"\r\n\r\n'.encode()
             for i in range(10000)]
    deep.append(b"--n10000\r\nContent-Type: text/plain\r\n\r\nDeep down.\r\n--n10000--\r\n")
    dovecot.deliver(b"".join(deep))
    dovecot.deliver(head("bad64", "Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: base64\r\n\r\n") +
                    b"!!!*** not base64 ===\r\nSGVs=bG8=\r\n\x01\x02\xff\xfe\r\n")
    dovecot.deliver(head("bogus", 'Content-Type: text/plain; charset="x-no-such-charset"\r\n'
                         "Content-Transfer-Encoding: 8bit\r\n\r\n") +
                    b"Bitte \xe4\xf6\xfc \xc3\x28 R\xfcckruf.\r\n")
    dovecot.deliver(head("big", "Content-Type: text/plain\r\n\r\n") + b"See below.\r\n" +
                    (b"A" * 998 + b"\r\n") * (50 * 1024 * 1024 // 1000))
    # A DSN for "victim" whose bounce tag has one character changed.
    bounce = t["victim"][2]
    local, domain = bounce.split("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    dovecot.deliver(fill("dsn_postfix_hard.eml", leads["victim"], "<unknown@example.com>",
                         "", forged))
    dovecot.deliver(fill("reply_threaded.eml", leads["after"], *t["after"]))
    try:
        wait_for(lambda: "reply" in events(d, leads["after"]), 90,
                 "the reply delivered after the hostile ones")
    except AssertionError:
        raise AssertionError(d.log_text()[-6000:]) from None
    for k in ("noboundary", "deep", "bad64", "bogus", "big"):
        s = show(d, leads[k])
        replies = [e for e in s["events"] if e["kind"] == "reply"]
        assert len(replies) == 1 and s["lead"]["status"] == "handoff", (k, s)
        assert replies[0]["detail"]["subject"] == f"Re: {k}", replies[0]
        if k == "noboundary":
            assert replies[0]["detail"]["excerpt"].startswith("Yes, call me."), replies[0]
    victim = show(d, leads["victim"])
    assert victim["lead"]["status"] == "active", victim["lead"]
    assert "bounce" not in [e["kind"] for e in victim["events"]]
    assert not d.sql("SELECT 1 FROM suppressions WHERE address = ?", leads["victim"])
    assert "tag that does not verify" in d.log_text()
    (unmatched,), = d.sql("SELECT unmatched FROM inbox_state")
    assert unmatched == 1, unmatched  # the forged DSN
    # The 50 MB message was read in bounded pieces, not held whole.
    grew = vm_hwm_kib(d.proc.pid) - hwm_before
    assert grew < 40 * 1024, f"peak RSS grew by {grew} KiB reading the hostile mail"
    print(f"\npeak RSS grew by {grew} KiB reading the hostile mail")
    assert d.proc.poll() is None
    assert d.stop() == 0
