#!/usr/bin/python3
"""End to end through a real MTA: dripd delivers over SMTP to a private Postfix instance on
loopback, which delivers into a local user's Maildir.

The test starts its own Postfix from a config directory under the test's temporary folder
(its own main.cf, master.cf, queue and data directories, log file and port) and stops it
at the end; the system Postfix in /etc/postfix is never touched or started. It needs root
(Postfix's master runs as root; the test creates the local user `dripdmail` if missing).
"""
import email
import email.policy
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port, wait_for

POSTFIX = "/usr/sbin/postfix"
DOMAIN = "example.test"
USER = "dripdmail"  # an unprivileged local user; mail for USER@DOMAIN lands in its Maildir
HOSTNAME = "mx.example.test"

pytestmark = pytest.mark.skipif(not os.path.exists(POSTFIX),
                                reason=f"{POSTFIX} is not installed "
                                       "(.ci/install-deps installs postfix)")

# Every service the queue manager and the local delivery path use, none chrooted (the
# chroot column is n: the instance has no chroot jail set up). smtpd listens only on
# 127.0.0.1:PORT.
MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = {domain}
myorigin = $mydomain
mydestination = {domain}, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP
home_mailbox = Maildir/
# No aliases database: local recipients are the system's users.
alias_maps =
alias_database =
local_recipient_maps = unix:passwd.byname
# Nothing leaves this host: any other destination (a bounce to the sender included) fails.
relayhost =
default_transport = error:this test instance delivers only to {domain}
relay_transport = error:this test instance delivers only to {domain}
biff = no
maillog_file = {log}
maillog_file_prefixes = {folder}
"""


class Postfix:
    """A private Postfix instance: config, queue, data and log under `folder` (which the
    postfix user must be able to reach)."""

    def __init__(self, folder):
        self.folder = folder
        self.config_dir = folder / "etc"
        self.queue = folder / "spool"
        self.data = folder / "lib"
        self.log = folder / "postfix.log"
        self.port = free_port()
        self.config_dir.mkdir(parents=True)
        self.queue.mkdir()
        self.data.mkdir(mode=0o700)
        owner = pwd.getpwnam("postfix")  # the Debian package creates the user
        os.chown(self.data, owner.pw_uid, owner.pw_gid)  # Postfix's own files: master.lock
        (self.config_dir / "main.cf").write_text(MAIN_CF.format(
            queue=self.queue, data=self.data, hostname=HOSTNAME, domain=DOMAIN,
            log=self.log, folder=folder))
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(port=self.port))
        self.master_pid = None

    def postfix(self, *args, check=True):
        r = subprocess.run([POSTFIX, "-c", str(self.config_dir), *args],
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, (f"postfix {' '.join(args)} exited {r.returncode}:\n"
                                       f"{r.stdout}{r.stderr}{self.log_text()}")
        return r

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self):
        self.postfix("check")  # creates the queue's subdirectories, with their owners
        self.postfix("start")
        pid_file = self.queue / "pid" / "master.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10,
                 "Postfix's master.pid")
        self.master_pid = int(pid_file.read_text())

        def listening():
            import socket
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    return s.recv(512).startswith(b"220 ")
            except OSError:
                return False
        wait_for(listening, 20, f"Postfix's smtpd on 127.0.0.1:{self.port}")
        return self

    def alive(self):
        pid_file = self.queue / "pid" / "master.pid"
        if self.master_pid is None and pid_file.exists():  # a start that failed half-way
            self.master_pid = int(pid_file.read_text() or 0) or None
        if self.master_pid is None:
            return False
        try:
            os.kill(self.master_pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self):
        """Stops the instance: orderly, then `postfix abort`, then SIGKILL to its master."""
        if not self.alive():
            return
        self.postfix("stop", check=False)
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.alive():
            self.postfix("abort", check=False)
            time.sleep(1)
        if self.alive():
            os.kill(self.master_pid, signal.SIGKILL)


def mail_user():
    """The local user mail is delivered to, created (with a home folder) if missing."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(USER)


@pytest.fixture
def postfix():
    assert os.geteuid() == 0, "the Postfix test runs its own Postfix instance: run as root"
    # Not under pytest's tmp_path: its folders are private to root (0700), and Postfix's
    # daemons, running as the postfix user, open files in the instance by absolute path.
    folder = Path(tempfile.mkdtemp(prefix="dripd-postfix-"))
    os.chmod(folder, 0o755)
    instance = Postfix(folder)
    try:
        yield instance.start()
    finally:
        instance.stop()
        shutil.rmtree(folder, ignore_errors=True)


def maildir_messages(new):
    if not new.exists():
        return []
    out = []
    for f in sorted(new.iterdir()):
        with open(f, "rb") as fh:
            out.append(email.message_from_binary_file(fh, policy=email.policy.default))
    return out


def test_dripd_delivers_through_a_real_postfix_into_a_local_maildir(daemon_factory,
                                                                     postfix):
    user = mail_user()
    maildir = os.path.join(user.pw_dir, "Maildir")
    shutil.rmtree(maildir, ignore_errors=True)
    try:
        d = daemon_factory()  # the sample content
        d.config["delivery"] = {"url": f"smtp://127.0.0.1:{postfix.port}",
                                "from": "Ana Ruiz <ana@example.com>"}
        d.write_config()
        d.start()
        rcpt = f"{USER}@{DOMAIN}"
        d.ctl("lead", "add", rcpt, "--first-name", "Dana", "--last-name", "Mills",
              "--company", "Mills & Daughters", "--stage", "decision")

        new = Path(maildir) / "new"
        try:
            msgs = wait_for(lambda: maildir_messages(new), 30, f"a message in {new}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- Postfix's log:\n{postfix.log_text()}"
                                 f"--- dripd's log:\n{d.log_text()}") from None
        assert len(msgs) == 1
        m = msgs[0]

        assert m["Subject"] == "A free 30-minute pipeline review for Mills & Daughters"
        sender = m["From"].addresses
        assert [(a.display_name, a.addr_spec) for a in sender] == \
            [("Ana Ruiz", "ana@example.com")]
        to = m["To"].addresses
        assert [(a.display_name, a.addr_spec) for a in to] == [("Dana Mills", rcpt)]
        unsubscribe = m["List-Unsubscribe"]
        assert "/u/" in unsubscribe and "<mailto:ana@example.com?subject=unsubscribe>" in \
            unsubscribe, unsubscribe
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert m.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in m.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert "Hi Dana," in m.get_body(("plain",)).get_content()
        assert "<p>Hi Dana,</p>" in m.get_body(("html",)).get_content()

        # What the real MTA added: its Received line, the envelope, the final recipient.
        received = m.get_all("Received")
        assert received and f"by {HOSTNAME} (Postfix)" in received[0] and \
            "127.0.0.1" in received[0] and f"for <{rcpt}>" in received[0], received
        assert m["Return-Path"] == "<ana@example.com>"
        assert m["Delivered-To"] == rcpt

        touch = wait_for(lambda: [t for t in d.ctl("lead", "show", rcpt)["touches"]
                                  if t["state"] == "sent"], 10, "the touch to be sent")[0]
        assert (touch["sequence"], touch["step"]) == ("decision-next-step", "pipeline-review")
        assert touch["message_id"] == m["Message-ID"]
        assert f"to=<{rcpt}>" in postfix.log_text() and "status=sent" in postfix.log_text()
        assert d.stop() == 0
    finally:
        shutil.rmtree(maildir, ignore_errors=True)
