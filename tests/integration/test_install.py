#!/usr/bin/python3
"""`cmake --install` into a DESTDIR puts every file where a Debian system looks for it, and
the man pages are lint-clean and agree with the real --help, `dripctl help` and config.c."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, DRIPCTL, DRIPD, ROOT

MAN = ROOT / "docs" / "man"
PAGES = ["dripd.8", "dripctl.1", "dripd.conf.5", "dripd-content.5"]


def pkg_var(name):
    r = subprocess.run(["pkg-config", f"--variable={name}", "systemd"], capture_output=True,
                       text=True)
    return r.stdout.strip() or None


def test_install_into_destdir_puts_every_file_in_place(tmp_path):
    # The plain build when there is one (what a packager installs), else the test build.
    build = Path(os.environ.get("DRIPD_PLAIN_BUILD", BUILD))
    dest = tmp_path / "root"
    r = subprocess.run(["cmake", "--install", str(build), "--prefix", "/usr"],
                       env=dict(os.environ, DESTDIR=str(dest)), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    unitdir = pkg_var("systemdsystemunitdir") or "/usr/lib/systemd/system"
    sysusers = pkg_var("sysusersdir") or "/usr/lib/sysusers.d"
    tmpfiles = pkg_var("tmpfilesdir") or "/usr/lib/tmpfiles.d"
    want = [
        "/usr/bin/dripd", "/usr/bin/dripctl",
        f"{unitdir}/dripd.service", f"{unitdir}/dripd.socket",
        f"{unitdir}/dripd-tracking.socket",
        f"{sysusers}/dripd.conf", f"{tmpfiles}/dripd.conf",
        "/usr/share/dripd/dripd.json",
        "/usr/share/dripd/content/journey.json",
        "/usr/share/dripd/content/sequences/awareness-basics.json",
        "/usr/share/dripd/content/templates/awareness/welcome.md",
        "/usr/share/man/man1/dripctl.1", "/usr/share/man/man5/dripd.conf.5",
        "/usr/share/man/man5/dripd-content.5", "/usr/share/man/man8/dripd.8",
    ]
    missing = [p for p in want if not (dest / p.lstrip("/")).is_file()]
    assert not missing, f"not installed: {missing}"
    assert os.access(dest / "usr/bin/dripd", os.X_OK)
    # The installed units name the installed binaries, not the source tree's default.
    service = (dest / unitdir.lstrip("/") / "dripd.service").read_text()
    assert "ExecStart=/usr/bin/dripd -c /etc/dripd/dripd.json" in service
    assert "ExecReload=/usr/bin/dripd check -c /etc/dripd/dripd.json" in service
    assert "/usr/local/" not in service
    # The installed example config and content validate together.
    cfg = tmp_path / "dripd.json"
    text = (dest / "usr/share/dripd/dripd.json").read_text()
    cfg.write_text(text.replace("/etc/dripd/content", str(dest / "usr/share/dripd/content")))
    r = subprocess.run([str(dest / "usr/bin/dripd"), "check", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not shutil.which("mandoc"), reason="needs mandoc")
@pytest.mark.parametrize("page", PAGES)
def test_man_page_is_lint_clean(page):
    r = subprocess.run(["mandoc", "-Tlint", "-Wstyle", str(MAN / page)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and not r.stdout and not r.stderr, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("man"), reason="needs man-db")
@pytest.mark.parametrize("page", PAGES)
def test_man_page_renders_without_warnings(page):
    r = subprocess.run(["man", "--warnings", "-l", str(MAN / page)], capture_output=True,
                       text=True, env=dict(os.environ, MANWIDTH="80", MAN_KEEP_STDERR="1"))
    assert r.returncode == 0, r.stderr
    assert not r.stderr.strip(), r.stderr


def roff_text(page):
    """The page's text with roff escapes for '-' undone, for looking words up."""
    return (MAN / page).read_text().replace("\\-", "-")


def test_every_config_key_is_in_dripd_conf_5():
    src = (ROOT / "daemon" / "config.c").read_text()
    keys = set()
    for arr in re.findall(r"config_\w+_keys\[\] = \{(.*?)\};", src, re.S):
        keys.update(re.findall(r'"([a-z_]+)"', arr))
    assert {"state_dir", "delivery", "password_file", "give_up", "poll"} <= keys, keys
    page = roff_text("dripd.conf.5")
    documented = set(re.findall(r"^\.B[IR]? ([a-z_]+)", page, re.M))
    missing = sorted(k for k in keys if k not in documented)
    assert not missing, f"config keys not documented in dripd.conf.5: {missing}"


def test_every_dripctl_command_is_in_dripctl_1():
    r = subprocess.run([str(DRIPCTL), "help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    commands = []
    for line in r.stdout.split("commands:", 1)[1].splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            words = [w for w in line.split() if re.fullmatch(r"[a-z][a-z-]*", w)]
            # "lead add EMAIL …": the command is its leading lowercase words.
            lead = []
            for w in line.split():
                if not re.fullmatch(r"[a-z][a-z-]*", w):
                    break
                lead.append(w)
            commands.append(" ".join(lead or words[:1]))
    assert "status" in commands and "lead add" in commands, commands
    page = roff_text("dripctl.1")
    items = set(re.findall(r"^\.B ([a-z][a-z -]*?)(?: \\f|$)", page, re.M))
    missing = [c for c in commands if c not in items]
    assert not missing, f"dripctl commands not documented in dripctl.1: {missing}"


def test_dripd_options_are_in_dripd_8():
    r = subprocess.run([str(DRIPD), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    page = roff_text("dripd.8")
    for opt in re.findall(r"(--[a-z-]+)", r.stdout):
        assert opt in page, f"{opt} from dripd --help is not in dripd.8"
    assert "dripd check" in page
