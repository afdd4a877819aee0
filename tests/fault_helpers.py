"""Real ``incdet`` processes for the signal tests: started in a session of their own (like a terminal's
job), so that every process they leave behind can be found in /proc by its session id (psutil is not
a dependency)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # this checkout, whatever the subprocess's working folder


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """``incdet ARGS`` in a new session; its stdout and stderr are pipes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "incdet.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    # A test run started in the background of a shell (`pytest &`, nohup, some CI runners) inherits
    # SIGINT ignored, and Python then never raises KeyboardInterrupt: give the command the default
    # disposition a terminal's foreground job has, so Ctrl-C is what the signal tests send.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def session_processes(session: int) -> list[int]:
    """The live (not zombie) processes of ``session``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def fork_server_running(session: int) -> bool:
    """Whether ``session`` has started its multiprocessing fork server (its first seconds: importing incdet)."""
    for pid in session_processes(session):
        try:
            if b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:  # gone meanwhile
            continue
    return False


def assert_no_processes_left(session: int, timeout: float = 15) -> None:
    """Every process of ``session`` exits within ``timeout`` seconds (workers notice their parent is gone)."""
    deadline = time.monotonic() + timeout
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = session_processes(session)
    for pid in left:  # end them, so that a failing test leaves nothing running either
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived the command: {left}"


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll ``condition()`` until it holds; fail with the process's stderr if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return
        time.sleep(0.02)
    stderr = process.stderr.read() if process.poll() is not None else ""
    raise AssertionError(f"{what} did not happen in time (exit code {process.poll()}) {stderr[-3000:]}")


def temporary_files(folder: Path) -> list[Path]:
    """Hidden or ``*.tmp*`` files anywhere under ``folder``: what an interrupted atomic write would leave."""
    return [p for p in folder.rglob("*") if p.is_file() and (p.name.startswith(".") or ".tmp" in p.name)]
