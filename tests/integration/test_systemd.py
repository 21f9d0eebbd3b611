#!/usr/bin/python3
"""dripd under systemd, with the tests playing systemd's part: a NOTIFY_SOCKET datagram
socket they own, WATCHDOG_USEC, listening sockets passed through LISTEN_FDS/LISTEN_FDNAMES,
and $CREDENTIALS_DIRECTORY. Also the unit files themselves: `systemd-analyze verify` and the
`systemd-analyze security` exposure score of dripd.service."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DRIPCTL, DRIPD, ROOT, wait_for


class Notify:
    """A datagram socket standing in for systemd's notify socket: records every message
    with the time it arrived."""

    def __init__(self, folder: Path):
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)
        self.messages = []  # (monotonic time, {key: value})

    def drain(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append((time.monotonic(), fields))

    def wait(self, key, value=None, timeout=20.0, after=0):
        """The first message from index `after` on that has key (= value); waits for it."""
        def find():
            for i, (_, m) in enumerate(self.drain()[after:], after):
                if key in m and (value is None or m[key] == value):
                    return i + 1
            return 0
        return wait_for(find, timeout, f"{key}={value or '…'} on the notify socket") - 1

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    n = Notify(tmp_path)
    yield n
    n.close()


def start_under_systemd(d, notify, watchdog_usec=None, prefix=(), extra_env=None):
    """Starts d's dripd as systemd would: NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID."""
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    env.update(extra_env or {})
    d.logfile = open(d.log, "ab")
    d.proc = subprocess.Popen([*prefix, str(DRIPD), "-c", str(d.config_path)], env=env,
                              stdout=d.logfile, stderr=d.logfile, cwd=d.folder)
    return d


def test_ready_only_once_the_control_socket_answers(daemon_factory, notify):
    d = daemon_factory()
    start_under_systemd(d, notify, watchdog_usec=2_000_000)
    i = notify.wait("READY", "1")
    # At the moment READY arrives, the control socket must already answer.
    r = d.ctl_raw("status")
    assert r.returncode == 0, f"dripctl status right after READY=1: {r.stderr}"
    ready = notify.messages[i][1]
    assert re.fullmatch(r"\d+\+? due, \d+ sending, paused: no", ready["STATUS"]), ready
    assert not any("READY" in m for _, m in notify.messages[:i]), "READY=1 sent twice"
    assert d.stop() == 0


def test_status_follows_what_is_due_and_the_pause(daemon_factory, notify):
    d = daemon_factory()
    start_under_systemd(d, notify, watchdog_usec=1_000_000)
    notify.wait("READY", "1")
    d.ctl("pause")
    # The next status (with a watchdog ping every 0.5 s) says so.
    notify.wait("STATUS", "0 due, 0 sending, paused: yes", timeout=10)
    for i in range(3):
        d.ctl("lead", "add", f"lead{i}@example.org", "--stage", "awareness")
    notify.wait("STATUS", "3 due, 0 sending, paused: yes", timeout=10)
    d.ctl("resume")
    notify.wait("STATUS", "0 due, 0 sending, paused: no", timeout=20)
    assert d.stop() == 0


def test_watchdog_pings_at_half_the_interval(daemon_factory, notify):
    d = daemon_factory()
    start_under_systemd(d, notify, watchdog_usec=2_000_000)
    notify.wait("READY", "1")
    start = time.monotonic()
    while time.monotonic() - start < 6.0:  # read as they come, so each has its own time
        notify.drain()
        time.sleep(0.05)
    pings = [t for t, m in notify.messages if m.get("WATCHDOG") == "1" and t >= start]
    # WATCHDOG_USEC=2s: a ping every second, 6 in 6 s; generous bounds for a busy machine,
    # but never a gap systemd would take for a hung daemon (2 s).
    assert 3 <= len(pings) <= 8, f"{len(pings)} watchdog pings in 6 s, expected about 6"
    gaps = [b - a for a, b in zip([start] + pings, pings)]
    assert max(gaps) < 2.0, f"a gap of {max(gaps):.2f}s between pings (WATCHDOG_USEC=2s)"
    assert d.stop() == 0


def test_no_watchdog_pings_without_watchdog_usec(daemon_factory, notify):
    d = daemon_factory()
    start_under_systemd(d, notify)
    notify.wait("READY", "1")
    time.sleep(1.5)
    assert not any("WATCHDOG" in m for _, m in notify.drain())
    assert d.stop() == 0


def test_reload_and_stop_are_announced(daemon_factory, notify):
    d = daemon_factory()
    start_under_systemd(d, notify, watchdog_usec=2_000_000)
    first = notify.wait("READY", "1")
    d.proc.send_signal(signal.SIGHUP)
    i = notify.wait("RELOADING", "1", after=first + 1)
    m = notify.messages[i][1]
    mono = int(m["MONOTONIC_USEC"])
    now = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    assert 0 < now - mono < 10e6, f"MONOTONIC_USEC={mono} is not CLOCK_MONOTONIC ({now:.0f})"
    j = notify.wait("READY", "1", after=i + 1)
    assert "refused" not in notify.messages[j][1]["STATUS"]

    # A reload with broken content: refused, still READY, and the status says so.
    d.config["content_dir"] = str(d.folder / "no-such-content")
    d.write_config()
    d.proc.send_signal(signal.SIGHUP)
    i = notify.wait("RELOADING", "1", after=j + 1)
    j = notify.wait("READY", "1", after=i + 1)
    assert "last reload refused" in notify.messages[j][1]["STATUS"]
    assert d.ctl_raw("status").returncode == 0

    d.proc.send_signal(signal.SIGTERM)
    k = notify.wait("STOPPING", "1", after=j + 1)
    assert notify.messages[k][1]["STATUS"].endswith("; stopping")
    assert d.proc.wait(20) == 0
    d.logfile.close()


def activate(d, notify, fds, names, listen_pid_of_child=True):
    """Starts dripd with `fds` passed as 3, 4, … and LISTEN_FDNAMES=names, as systemd does:
    the child moves them into place, and a shell sets LISTEN_PID=$$ (its own pid, which
    exec hands on to dripd)."""
    def place():
        high = [os.dup2(fd, 100 + i, inheritable=True) for i, fd in enumerate(fds)]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i, inheritable=True)
            os.close(fd)
    pid = '"$$"' if listen_pid_of_child else "1"
    script = (f'LISTEN_PID={pid} LISTEN_FDS={len(fds)} LISTEN_FDNAMES={names} '
              'exec "$0" "$@"')
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    d.logfile = open(d.log, "ab")
    d.proc = subprocess.Popen(["/bin/sh", "-c", script, str(DRIPD), "-c", str(d.config_path)],
                              env=env, stdout=d.logfile, stderr=d.logfile, cwd=d.folder,
                              preexec_fn=place, pass_fds=[3 + i for i in range(len(fds))])
    return d


def listening_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(16)
    return s


def test_socket_activation_serves_systemds_control_and_tracking_sockets(daemon_factory, notify,
                                                                       tmp_path):
    d = daemon_factory()
    # systemd's socket lives elsewhere than the config says: dripd must use the one passed.
    sock_path = tmp_path / "activated.sock"
    s = listening_unix(sock_path)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    tracking_port = tcp.getsockname()[1]
    assert tracking_port != d.http_port
    activate(d, notify, [s.fileno(), tcp.fileno()], "control:tracking")
    s.close()
    tcp.close()
    notify.wait("READY", "1")
    r = subprocess.run([str(DRIPCTL), "-s", str(sock_path), "--json", "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '"paused"' in r.stdout
    assert not d.socket.exists(), "dripd bound its own socket although systemd passed one"
    # The tracking listener serves on systemd's TCP socket, not on tracking.listen.
    with socket.create_connection(("127.0.0.1", tracking_port), timeout=5) as h:
        h.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := h.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", d.http_port), timeout=2).close()
    assert "does not use" not in d.log_text()
    assert d.stop() == 0
    # The socket file is systemd's: dripd leaves it for the next activation.
    assert sock_path.exists()


def test_socket_activation_with_systemd_socket_activate(daemon_factory, notify, tmp_path):
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        pytest.skip("systemd-socket-activate is not installed")
    d = daemon_factory()
    sock_path = tmp_path / "ssa.sock"
    start_under_systemd(d, notify,
                        prefix=(tool, "-l", str(sock_path), "--fdname=control",
                                # it passes on only the environment it is told to
                                "-E", f"NOTIFY_SOCKET={notify.path}",
                                "-E", f"ASAN_OPTIONS={os.environ.get('ASAN_OPTIONS', '')}"))
    wait_for(sock_path.exists, 20, "systemd-socket-activate to bind")
    r = subprocess.run([str(DRIPCTL), "-s", str(sock_path), "status"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"{r.stderr}\n{d.log_text()}"
    notify.wait("READY", "1")
    assert not d.socket.exists()
    assert d.stop() == 0


def test_sockets_for_another_pid_are_left_alone(daemon_factory, notify, tmp_path):
    d = daemon_factory()
    s = listening_unix(tmp_path / "other.sock")
    # LISTEN_PID=1: the fds are someone else's; dripd binds its own socket as usual.
    activate(d, notify, [s.fileno()], "control", listen_pid_of_child=False)
    s.close()
    notify.wait("READY", "1")
    assert d.socket.exists()
    assert d.ctl_raw("status").returncode == 0
    assert d.stop() == 0


def test_a_wrong_socket_under_the_control_name_is_refused(daemon_factory, notify, tmp_path):
    d = daemon_factory()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    activate(d, notify, [tcp.fileno()], "control")
    tcp.close()
    assert d.proc.wait(20) == 1
    d.logfile.close()
    assert '"control" is not a listening AF_UNIX stream socket' in d.log_text()
    assert not any("READY" in m for _, m in notify.drain())


def test_secrets_come_from_the_credentials_directory(daemon_factory, notify, tmp_path):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "dripd.tracking-secret").write_text("x" * 40 + "\n")
    d = daemon_factory(tracking={"secret_file": "credential:dripd.tracking-secret"})
    start_under_systemd(d, notify, extra_env={"CREDENTIALS_DIRECTORY": str(creds)})
    notify.wait("READY", "1")
    assert not (d.folder / "state" / "tracking.secret").exists(), \
        "dripd made its own secret although the credential names one"
    assert d.stop() == 0

    # A credential systemd did not pass: the daemon names the file it looked for.
    d2 = daemon_factory("d2", tracking={"secret_file": "credential:dripd.missing"})
    start_under_systemd(d2, notify, extra_env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert d2.proc.wait(20) == 1
    d2.logfile.close()
    assert f"{creds}/dripd.missing" in d2.log_text()

    # Outside systemd: a clear refusal, and `dripd check` warns instead of failing.
    d3 = daemon_factory("d3", delivery={"url": "maildir:Maildir",
                                        "password_file": "credential:dripd.smtp-password"})
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    r = subprocess.run([str(DRIPD), "-c", str(d3.config_path)], env=env, cwd=d3.folder,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert '"delivery.password_file" names a credential but $CREDENTIALS_DIRECTORY' in r.stderr
    r = subprocess.run([str(DRIPD), "check", "-c", str(d3.config_path)], env=env,
                       cwd=d3.folder, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "names a credential" in r.stderr


UNITS = ROOT / "systemd"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_unit_files_pass_systemd_analyze_verify(tmp_path):
    # verify resolves ExecStart= on this machine: point it at the built binaries.
    for unit in ("dripd.service", "dripd.socket", "dripd-tracking.socket"):
        text = (UNITS / unit).read_text()
        text = text.replace("/usr/local/bin/dripd", str(DRIPD))
        text = text.replace("/usr/local/bin/dripctl", str(DRIPCTL))
        (tmp_path / unit).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        *(str(tmp_path / u) for u in ("dripd.service", "dripd.socket",
                                                      "dripd-tracking.socket"))],
                       capture_output=True, text=True, timeout=120)
    # verify also complains about the host's own units when systemd is not PID 1; only
    # lines about our units count.
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "dripd" in line]
    assert not ours, "\n".join(ours)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_service_exposure_score_is_at_most_1_5():
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        str(UNITS / "dripd.service")], capture_output=True, text=True,
                       timeout=120)
    m = re.search(r"Overall exposure level for dripd\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 1.5, r.stdout
