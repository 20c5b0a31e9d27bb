"""The review commands: users, db upgrade, and `neckmatch serve` as a real server on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import run_main

PW = "a sufficiently long password"


def _pw(tmp_path: Path, text: str = PW) -> str:
    p = tmp_path / "pw.txt"
    p.write_text(text + "\n", encoding="utf-8")
    return str(p)


def test_users_add_list_disable_in_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_main(monkeypatch, "users", "add", "rad", "--role", "radiologist", "--password-file", _pw(tmp_path)) == 0
    assert (tmp_path / "review.sqlite").is_file()
    assert run_main(monkeypatch, "users", "add", "adj", "--role", "adjudicator", "--password-file", _pw(tmp_path)) == 0
    assert run_main(monkeypatch, "users", "disable", "rad") == 0
    capsys.readouterr()
    assert run_main(monkeypatch, "users", "list") == 0
    lines = capsys.readouterr().out.split("\n")
    assert [ln.split("\t") for ln in lines if ln] == [["adj", "adjudicator", "active"],
                                                     ["rad", "radiologist", "disabled"]]


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "surgeon"], "--role: must be one of radiologist, pathologist, adjudicator, admin"),
    (["--role", "admin", "--password-file", "SHORT"], "password: must be at least 12 characters"),
    (["--role", "admin", "--db", "mysql://x"], "--db: must be a sqlite:/// or postgresql+psycopg:// URL"),
])
def test_users_add_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    args = [_pw(tmp_path, "short") if a == "SHORT" else a for a in args]
    if "--password-file" not in args:
        args += ["--password-file", _pw(tmp_path)]
    assert run_main(monkeypatch, "users", "add", "x", *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_db_upgrade_creates_the_results_folders_database(tmp_path, monkeypatch):
    assert run_main(monkeypatch, "db", "upgrade", str(tmp_path)) == 0
    assert (tmp_path / "review.sqlite").stat().st_size > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hport = local.rsplit(":", 1)
            if state == "0A" and int(hport, 16) == port:
                found.add(addr)
    return found


def test_serve_binds_loopback_by_default_and_logs_no_case_ids(tmp_path, results, monkeypatch):
    import httpx2 as httpx

    res = tmp_path / "results"
    shutil.copytree(results, res, ignore=shutil.ignore_patterns("review.sqlite*"))
    assert run_main(monkeypatch, "users", "add", "rad", "--role", "radiologist", "--password-file", _pw(tmp_path),
                    "--results", str(res)) == 0
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "neckmatch.cli", "serve", str(res), "--port", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True, timeout=300)
        for _ in range(600):  # bounded wait for the server to come up
            try:
                if client.get("/login").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        page = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        resp = client.post("/login", data={"name": "rad", "password": PW, "csrf": token})
        assert resp.status_code == 200 and "Your queue" in resp.text
        item = re.search(r'id="next"[^>]*href="([^"]+)"', resp.text).group(1)
        assert client.get(item).status_code == 200
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a graceful shutdown, then the exit code of an interrupted command
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 130 and "Application shutdown complete" in text and text.rstrip().endswith("interrupted")
    assert f"GET {item} HTTP/1.1\" 200" in text  # the access log is there ...
    for case_dir in res.iterdir():
        if (case_dir / "run.json").is_file():
            assert case_dir.name not in text  # ... without a case id (nor a case folder) anywhere in the log
    assert str(results.parent / "cohort") not in text
