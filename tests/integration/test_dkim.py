#!/usr/bin/python3
"""The README's deliverability example, run for real: dripd hands its mail to a private
Postfix that has OpenDKIM as a milter, and the message that lands in the Maildir carries a
DKIM signature for the From domain that verifies against the public key OpenDKIM's own
opendkim-genkey wrote (looked up from that file, as DNS would serve it).

A second case shows why the README sets `milter_default_action = tempfail`: with the signer
down, Postfix refuses the mail for now, dripd defers the touch, and nothing goes out unsigned.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port, wait_for
from test_postfix import DOMAIN, USER, Postfix, mail_user, maildir_messages

OPENDKIM = "/usr/sbin/opendkim"
GENKEY = "/usr/sbin/opendkim-genkey"
SIGNING_DOMAIN = "example.com"  # the From domain of the sample journey's sender
SELECTOR = "dripd"

dkim = pytest.importorskip("dkim", reason="python3-dkim (.ci/install-deps installs it)")
pytestmark = pytest.mark.skipif(
    not (os.path.exists(OPENDKIM) and os.path.exists(GENKEY)),
    reason="opendkim and opendkim-tools are not installed (.ci/install-deps installs them)")

# The README's opendkim.conf, with the test's paths and port.
OPENDKIM_CONF = """\
Syslog                  no
Mode                    s
Domain                  {domain}
Selector                {selector}
KeyFile                 {key}
Canonicalization        relaxed/simple
# RFC 8058 section 4: List-Unsubscribe and List-Unsubscribe-Post MUST be signed (OpenDKIM's
# default list leaves out the second, and Message-ID). Oversigning stops anyone adding one.
SignHeaders             From,Reply-To,To,Cc,Subject,Date,Message-ID,In-Reply-To,References,MIME-Version,Content-Type,List-Unsubscribe,List-Unsubscribe-Post
OversignHeaders         From,Subject,List-Unsubscribe,List-Unsubscribe-Post
Socket                  inet:{port}@127.0.0.1
InternalHosts           127.0.0.1
UserID                  opendkim
PidFile                 {folder}/opendkim.pid
"""


class OpenDkim:
    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        subprocess.run([GENKEY, "-b", "2048", "-D", str(folder), "-d", SIGNING_DOMAIN,
                        "-s", SELECTOR], check=True, capture_output=True)
        self.key = folder / f"{SELECTOR}.private"
        shutil.chown(self.key, "opendkim")
        self.conf = folder / "opendkim.conf"
        self.conf.write_text(OPENDKIM_CONF.format(domain=SIGNING_DOMAIN, selector=SELECTOR,
                                                  key=self.key, port=self.port,
                                                  folder=folder))
        self.log = open(folder / "opendkim.log", "wb")
        self.proc = None

    def dns_txt(self):
        """The TXT record opendkim-genkey says to publish: its quoted strings, joined."""
        text = (self.folder / f"{SELECTOR}.txt").read_text()
        return "".join(re.findall(r'"([^"]*)"', text)).encode()

    def start(self):
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def listening():
            import socket
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                assert self.proc.poll() is None, \
                    f"opendkim exited {self.proc.returncode}: {self.log_text()}"
                return False
        wait_for(listening, 10, f"opendkim on 127.0.0.1:{self.port}")
        return self

    def log_text(self):
        return (self.folder / "opendkim.log").read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def signing_postfix():
    """A private Postfix whose smtpd passes mail through OpenDKIM, as the README sets up."""
    assert os.geteuid() == 0, "the DKIM test runs its own Postfix and OpenDKIM: run as root"
    # OpenDKIM refuses a config or key under a folder others may write to (/tmp is one).
    base = Path("/var/lib/dripd-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="dkim-", dir=base))
    os.chmod(folder, 0o755)
    signer = OpenDkim(folder)
    mta = Postfix(folder / "postfix")
    with open(mta.config_dir / "main.cf", "a") as f:
        f.write(f"smtpd_milters = inet:127.0.0.1:{signer.port}\n"
                "non_smtpd_milters = $smtpd_milters\n"
                "milter_default_action = tempfail\n")
    try:
        yield mta, signer
    finally:
        mta.stop()
        signer.stop()
        shutil.rmtree(folder, ignore_errors=True)


def start_dripd(daemon_factory, port, rcpt):
    d = daemon_factory()
    d.config["delivery"] = {"url": f"smtp://127.0.0.1:{port}",
                            "from": f"Ana Ruiz <ana@{SIGNING_DOMAIN}>",
                            "retry_min": "1m"}
    d.write_config()
    d.start()
    d.ctl("lead", "add", rcpt, "--first-name", "Dana", "--company", "Mills & Daughters",
          "--stage", "decision")
    return d


def test_mail_dripd_hands_to_postfix_is_dkim_signed_for_the_from_domain(daemon_factory,
                                                                        signing_postfix):
    mta, signer = signing_postfix
    signer.start()
    mta.start()
    user = mail_user()
    maildir = Path(user.pw_dir) / "Maildir"
    shutil.rmtree(maildir, ignore_errors=True)
    rcpt = f"{USER}@{DOMAIN}"
    try:
        d = start_dripd(daemon_factory, mta.port, rcpt)
        try:
            msgs = wait_for(lambda: maildir_messages(maildir / "new"), 30,
                            "a signed message in the Maildir")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- Postfix:\n{mta.log_text()}--- OpenDKIM:\n"
                                 f"{signer.log_text()}--- dripd:\n{d.log_text()}") from None
        assert len(msgs) == 1
        raw = next((maildir / "new").iterdir()).read_bytes()

        sig = msgs[0]["DKIM-Signature"]
        assert sig, f"no DKIM-Signature in:\n{raw[:2000].decode(errors='replace')}"
        tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", " ", sig).split(";")
                    if "=" in t)
        assert tags["d"] == SIGNING_DOMAIN and tags["s"] == SELECTOR, tags
        signed = [h.strip().lower() for h in tags["h"].split(":")]
        for h in ("from", "to", "subject", "date", "message-id", "list-unsubscribe",
                  "list-unsubscribe-post"):
            assert h in signed, f"{h} is not covered by the signature: {signed}"

        def dns(name, timeout=5):
            assert name == f"{SELECTOR}._domainkey.{SIGNING_DOMAIN}.".encode() or \
                name == f"{SELECTOR}._domainkey.{SIGNING_DOMAIN}".encode(), name
            return signer.dns_txt()
        assert dkim.verify(raw, dnsfunc=dns), "the DKIM signature does not verify"

        # And a byte changed in the body breaks it: the check above can fail.
        tampered = raw.replace(b"Dana", b"Dina", 1)
        assert tampered != raw
        assert not dkim.verify(tampered, dnsfunc=dns)
        assert d.stop() == 0
    finally:
        shutil.rmtree(maildir, ignore_errors=True)


def test_with_the_signer_down_mail_is_deferred_not_sent_unsigned(daemon_factory,
                                                                 signing_postfix):
    mta, signer = signing_postfix
    mta.start()  # OpenDKIM is not running
    user = mail_user()
    maildir = Path(user.pw_dir) / "Maildir"
    shutil.rmtree(maildir, ignore_errors=True)
    rcpt = f"{USER}@{DOMAIN}"
    try:
        d = start_dripd(daemon_factory, mta.port, rcpt)

        def deferred():
            touches = d.ctl("lead", "show", rcpt)["touches"]
            return [t for t in touches if t["state"] == "pending" and t["attempts"] >= 1]
        t = wait_for(deferred, 30, "the touch to be deferred")[0]
        assert t["last_error"].startswith("4"), t
        time.sleep(1)
        assert maildir_messages(maildir / "new") == []
        assert d.stop() == 0
    finally:
        shutil.rmtree(maildir, ignore_errors=True)
