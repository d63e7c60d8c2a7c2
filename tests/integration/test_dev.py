"""`pedro-worker dev` on embedded servers: starts, shows the ledger moving, stops clean."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dev_runs_on_embedded_servers_and_ctrl_c_leaves_nothing_behind(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dev"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "worker running" in line:
                break
        text = "".join(output)
        assert "worker running" in text, text
        ports = sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)})
        assert len(ports) == 3 and all(_listening(p) for p in ports)  # postgres, redis, ingress
        curl = re.search(r"try +curl .* -d '(.*)'$", text, re.M)
        assert curl and "Authorization: Bearer dev-" in text, text  # a usable example, token included
        demo = re.search(r"user_demo_alice: (\d+) -> (\d+)", text)
        assert demo and int(demo[2]) < int(demo[1]), text  # the demo events moved the ledger
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert not any(_listening(p) for p in ports)
