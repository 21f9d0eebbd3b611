#!/usr/bin/python3
"""pytest harness for the fault suite: the integration fixtures (Daemon, daemon_factory,
wait_for, free_port, ...) plus Postfix's smtp-sink as the SMTP server, whose -d dumps record
every message it accepted and whose fault flags make it misbehave on purpose.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import importlib.util

import pytest

# The integration suite's conftest, loaded under its own name (both files are "conftest").
_spec = importlib.util.spec_from_file_location(
    "dripd_integration_conftest", Path(__file__).resolve().parents[1] / "integration" /
    "conftest.py")
integration = importlib.util.module_from_spec(_spec)
sys.modules["dripd_integration_conftest"] = integration
_spec.loader.exec_module(integration)

BUILD, DRIPCTL, DRIPD, ROOT = integration.BUILD, integration.DRIPCTL, integration.DRIPD, \
    integration.ROOT
Daemon, free_port, wait_for = integration.Daemon, integration.free_port, integration.wait_for
daemon_factory = integration.daemon_factory
smtp_sink, SmtpSink = integration.smtp_sink, integration.SmtpSink

PLAIN_BUILD = Path(os.environ.get("DRIPD_PLAIN_BUILD", ROOT / "build"))


def find_smtp_sink():
    for p in (shutil.which("smtp-sink"), "/usr/sbin/smtp-sink", "/usr/lib/postfix/smtp-sink",
              "/usr/lib/postfix/sbin/smtp-sink"):
        if p and os.access(p, os.X_OK):
            return p
    pytest.skip("Postfix's smtp-sink is not installed")


class PostfixSink:
    """smtp-sink on a free loopback port, dumping each accepted message to its own file
    (-d). `flags` are smtp-sink's own fault options, e.g. ["-r", "RCPT"] (4xx at RCPT),
    ["-f", "RCPT"] (5xx), ["-Q", "CONNECT"] (421 greeting), ["-q", "."] (hang up after
    the final dot), ["-W", ".:30"] (stall before answering the dot). It runs as nobody, since
    it refuses to keep root, and writes into a folder of its own."""

    def __init__(self, flags=(), port=None):
        self.binary = find_smtp_sink()
        self.flags = list(flags)
        self.port = port or free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="dripd-sink."))
        self.dumps = self.dir / "dumps"
        self.dumps.mkdir()
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dumps, nobody.pw_uid, nobody.pw_gid)
        self.proc = None
        self._seen = {}
        self.start()

    def start(self):
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.log = open(self.dir / "sink.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, *user, "-m", "1000", "-t", "300", *self.flags,
             "-d", str(self.dumps) + "/%H%M%S.", f"127.0.0.1:{self.port}", "1000"],
            stdout=self.log, stderr=self.log)
        wait_for(self._listening, 10, f"smtp-sink on port {self.port}")
        return self

    def _listening(self):
        assert self.proc.poll() is None, (self.dir / "sink.log").read_text(errors="replace")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        self.proc = None

    def restart(self, flags=None):
        self.stop()
        if flags is not None:
            self.flags = list(flags)
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self):
        """Every message the sink accepted so far: dicts with rcpts, message_id, subject,
        headers (the message's own header lines) and raw (the message as received)."""
        out = []
        for f in sorted(self.dumps.rglob("*")):
            if not f.is_file():
                continue
            st = f.stat()
            key = str(f)
            cached = self._seen.get(key)
            if cached and cached[0] == st.st_size:
                out.append(cached[1])
                continue
            m = parse_dump(f.read_bytes())
            self._seen[key] = (st.st_size, m)
            out.append(m)
        return out

    def count(self):
        return sum(1 for f in self.dumps.rglob("*") if f.is_file())


def parse_dump(data):
    """One smtp-sink -d file: its X-* records, its 3-line Received header, then the message."""
    lines = data.split(b"\n")
    rcpts, i = [], 0
    while i < len(lines) and not lines[i].startswith(b"Received: "):
        if lines[i].startswith(b"X-Rcpt-Args: "):
            rcpts.append(lines[i][13:].decode(errors="replace").strip().strip("<>").split(">")[0])
        i += 1
    i += 3  # Received: from, by, time-stamp
    body = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines[i:]]
    headers, j = [], 0
    while j < len(body) and body[j] != b"":
        headers.append(body[j])
        j += 1
    msg_id = subject = None
    for h in headers:
        if h.lower().startswith(b"message-id: "):
            msg_id = h[12:].decode(errors="replace").strip()
        elif h.lower().startswith(b"subject: "):
            subject = h[9:].decode(errors="replace").strip()
    return {"rcpts": rcpts, "message_id": msg_id, "subject": subject, "headers": headers,
            "body": body[j + 1:], "complete": bool(headers)}


@pytest.fixture
def postfix_sink():
    """Makes PostfixSink servers (call with smtp-sink flags) and stops them all at the end."""
    made = []

    def make(*flags, port=None):
        s = PostfixSink(flags, port=port)
        made.append(s)
        return s
    yield make
    for s in made:
        s.cleanup()


def smtp_daemon(daemon_factory, content, url, threads=4, name="d", **delivery):
    """A Daemon on `content` delivering to `url` with `threads` sender threads."""
    d = daemon_factory(name, content=content)
    d.config["delivery"] = {"url": url, "from": "Ana Ruiz <ana@example.com>",
                            "max_connections": threads, **delivery}
    d.write_config()
    return d


def write_content(folder: Path, files) -> Path:
    for name, text in files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return folder


def elapsed(start):
    return time.monotonic() - start
