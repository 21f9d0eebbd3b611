#!/usr/bin/python3
"""pytest harness for dripd: start the built daemon in a temporary folder with its own
config, socket, database and Maildir, drive it with dripctl, stop it.

Binaries come from $DRIPD_BUILD (default: build/ at the top of the tree). Every daemon a
test starts is stopped when the test ends, whatever happened.
"""
import email
import email.policy
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DRIPD_BUILD", ROOT / "build"))
DRIPD = BUILD / "dripd"
DRIPCTL = BUILD / "dripctl"
SAMPLE_CONTENT = ROOT / "content"


def wait_for(predicate, timeout=10.0, what="condition"):
    """Polls predicate until it is true; fails the test with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Daemon:
    """One dripd process with its own folder: config, state/, control.sock, Maildir/."""

    def __init__(self, folder: Path, content: Path = SAMPLE_CONTENT, **config):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket = folder / "control.sock"
        self.maildir = folder / "Maildir"
        self.db = folder / "state" / "dripd.db"
        self.log = folder / "dripd.log"
        self.config_path = folder / "dripd.json"
        self.proc = None
        cfg = {
            "state_dir": "state",
            "content_dir": str(content),
            "control_socket": "control.sock",
            "delivery": {"url": "maildir:Maildir", "from": "Ana Ruiz <ana@example.com>",
                         "max_connections": 2},
            "test_clock": True,
        }
        # Every daemon listens for tracking on a port of its own, so tests can run side by side.
        tracking = dict(config.pop("tracking", {}))
        if "listen" not in tracking:
            tracking["listen"] = f"127.0.0.1:{free_port()}"
        port = int(tracking["listen"].rsplit(":", 1)[1])
        self.http_port = port
        self.base_url = f"http://127.0.0.1:{port}"  # where tests reach it (not base_url)
        cfg["tracking"] = tracking
        cfg.update(config)
        self.config = cfg
        self.write_config()

    def write_config(self):
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")

    def start(self, wait=True, binary=None, prefix=()):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.logfile = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*prefix, str(binary or DRIPD), "-c", str(self.config_path)],
            stdout=self.logfile, stderr=self.logfile, cwd=self.folder)
        if wait:
            wait_for(lambda: self.proc.poll() is not None or self.answers(), 20,
                     f"dripd to listen on {self.socket}")
            assert self.proc.poll() is None, f"dripd exited:\n{self.log_text()}"
        return self

    def answers(self):
        if not self.socket.exists():
            return False
        return self.ctl_raw("status").returncode == 0

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the daemon with `sig` and returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"dripd did not stop within {timeout}s:\n{self.log_text()}")
        self.logfile.close()
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.logfile.close()

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ctl_raw(self, *args, json_out=False):
        cmd = [str(DRIPCTL), "-s", str(self.socket)]
        if json_out:
            cmd.append("--json")
        return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                              timeout=30)

    def ctl(self, *args):
        """Runs dripctl --json ARGS; returns the parsed result; fails the test on error."""
        r = self.ctl_raw(*args, json_out=True)
        assert r.returncode == 0, (f"dripctl {' '.join(map(str, args))} exited "
                                   f"{r.returncode}: {r.stderr}")
        return json.loads(r.stdout)

    def advance(self, duration):
        return self.ctl("clock", "advance", duration)

    def messages(self):
        """The messages in Maildir/new, parsed, in the order dripd created their touches."""
        new = self.maildir / "new"
        if not new.exists():
            return []
        msgs = []
        for f in new.iterdir():
            with open(f, "rb") as fh:
                msgs.append(email.message_from_binary_file(fh, policy=email.policy.default))

        def touch_number(m):
            return int(m["Message-ID"].split(".")[0].lstrip("<t"))
        return sorted(msgs, key=touch_number)

    def wait_messages(self, n, timeout=10.0):
        return wait_for(lambda: len(self.messages()) >= n and self.messages(), timeout,
                        f"{n} message(s) in {self.maildir}/new")

    def sql(self, query, *params):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()


@pytest.fixture
def daemon_factory(tmp_path):
    """Makes Daemon objects in the test's temporary folder and stops them all at the end."""
    made = []

    def make(name="d", **kwargs):
        d = Daemon(tmp_path / name, **kwargs)
        made.append(d)
        return d
    yield make
    for d in made:
        d.kill()


@pytest.fixture
def daemon(daemon_factory):
    """A running dripd on the sample content with a test clock."""
    return daemon_factory().start()


def copy_content(dest: Path, src: Path = SAMPLE_CONTENT) -> Path:
    shutil.copytree(src, dest)
    return dest


def free_port():
    """A TCP port on loopback that nothing listens on right now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    """An aiosmtpd server on loopback that records every message and can be told to
    misbehave per recipient: answer a code at RCPT, hang up after the data, or stall.
    With pipelining, its EHLO offers PIPELINING (RFC 2920), so dripd sends MAIL, RCPT and
    DATA in one write; aiosmtpd answers them in turn as Postfix does."""

    def __init__(self, pipelining=False, tls=None, cert=None, logins=None):
        """tls: None, "starttls" (required before MAIL) or "implicit" (smtps), with
        cert = (certificate, key) paths; logins: {user: password}, AUTH then required."""
        import asyncio
        import ssl
        from aiosmtpd.controller import Controller
        self.asyncio = asyncio
        self.messages = []          # (envelope_from, [rcpts], raw bytes)
        self.sessions = set()       # one per SMTP connection that sent MAIL
        self.rcpt_codes = {}        # address -> "550 5.1.1 no such user"
        self.mail_code = None       # "553 5.7.1 sender refused": every MAIL's answer
        self.drop_after_data = set()  # addresses whose DATA gets no answer
        self.stall = 0.0            # seconds to wait before answering the final dot
        self.pipelining = pipelining
        self.logins = logins or {}
        self.authenticated = []     # (login, over TLS) of each session that sent MAIL
        self.port = free_port()
        kwargs = {}
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*cert)
            if tls == "implicit":
                # aiosmtpd does not count TLS from the start as TLS for AUTH: it would not
                # offer AUTH at all.
                kwargs.update(ssl_context=ctx, auth_require_tls=False)
            else:
                kwargs.update(tls_context=ctx, require_starttls=True)
        if logins:
            kwargs.update(authenticator=self.authenticate, auth_required=True)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        host = "localhost" if tls else "127.0.0.1"  # the certificate's name
        self.url = f"{'smtps' if tls == 'implicit' else 'smtp'}://{host}:{self.port}"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword
        ok = (isinstance(auth_data, LoginPassword) and
              self.logins.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.sessions.add(id(session))
        if self.mail_code:
            return self.mail_code
        if self.logins:
            login = session.auth_data.login.decode() if session.authenticated else None
            tls = server.transport.get_extra_info("ssl_object") is not None
            self.authenticated.append((login, tls))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.rcpt_codes.get(address)
        if code:
            return code
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.stall:
            await self.asyncio.sleep(self.stall)
        if any(r in self.drop_after_data for r in envelope.rcpt_tos):
            server.transport.close()
            return "421 closing"  # never reaches the client: the connection is gone
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content))
        return "250 2.0.0 queued"

    def parsed(self):
        import email
        import email.policy
        return [email.message_from_bytes(raw, policy=email.policy.strict)
                for _, _, raw in self.messages]

    def stop(self):
        self.controller.stop()


@pytest.fixture
def smtp_sink(request):
    """The SMTP server; indirect parametrisation with True makes it offer PIPELINING."""
    sink = SmtpSink(pipelining=getattr(request, "param", False))
    yield sink
    sink.stop()


@pytest.fixture
def chromium(tmp_path):
    """Headless Chromium through selenium (Debian's chromium-driver), quit at the end."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip("chromium and chromedriver are needed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={tmp_path / 'chromium'}", "--no-first-run"):
        opts.add_argument(a)
    from selenium.webdriver.chrome.service import Service
    drv = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")),
                           options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
