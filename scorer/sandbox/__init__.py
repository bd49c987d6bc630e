"""Real Kafka and Redis servers, run locally for the demo and the tests.

Each server is a child process of this Python process, bound to 127.0.0.1 on
ports picked when it starts, with its files in one work dir. The servers
themselves are `scorer.sandbox.kafka.KafkaBroker` and
`scorer.sandbox.redis.RedisServer`; this module holds what they share: the
child's lifecycle (start, stop, kill, restart, pause, resume) and the guard
that kills the child when its parent dies, so a crashed test run leaves no
orphan JVM behind.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from scorer.errors import ScorerError

logger = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
STOP_TIMEOUT_S = 30.0  # Kafka's shutdown takes ~2 s here; a loaded CI box is slower.
READY_POLL_S = 0.1  # startup takes seconds, so a finer probe gains nothing
LOG_TAIL_LINES = 40  # enough of a server log to see why a start failed
LOG_READ_BYTES = 1024 * 1024  # of a log that may be huge; covers a failed start
LOG_ERROR_LINES = 5  # error lines quoted first: a failed start's tail is shutdown noise
PORT_ATTEMPTS = 3  # fresh ports tried when another process binds ours first
BIND_ERROR = "Address already in use"  # the OS text that Java and Redis both log
SHELL_SIGNAL_BASE = 128  # exit code 128 + N: ended on signal N, shell style

# From <linux/prctl.h>: deliver a signal to this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback TCP ports that were free a moment ago.

    The sockets stay open until all ports are picked so the kernel cannot hand
    out one port twice. Another process may still take a port before the
    server binds it; `LocalServer.start` retries with fresh ports then.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((LOOPBACK_HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def require_tool(name: str, hint: str) -> str:
    """Return the path of executable `name`, or raise with how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ScorerError(f"{name} not found on PATH; {hint}")
    return path


def _parent_death_guard() -> Callable[[], None] | None:
    """Build the `preexec_fn` that makes a child die with this process.

    Linux only; elsewhere children may outlive a crashed parent. The libc
    function is looked up here, in the parent, so the forked child runs as
    little Python as possible before exec.
    """
    if not sys.platform.startswith("linux"):
        return None

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    kill_signal = int(signal.SIGKILL)
    parent_pid = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, kill_signal)
        # The parent may have died between fork and prctl; then no signal
        # would ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return die_with_parent


def spawn(command: list[str], cwd: Path, output: Path) -> subprocess.Popen[bytes]:
    """Start `command` as a child that dies with this process.

    Known limitation: Linux sends the death signal when the *thread* that
    forked the child ends, so start servers from a thread that lives as long
    as they should (pytest's main thread does).
    """
    with output.open("ab") as sink:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # preexec_fn is unsafe when threads exist in general; this one only
            # calls prctl and getppid.
            preexec_fn=_parent_death_guard(),
        )


def run_to_end(
    command: list[str], cwd: Path, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived tool to its end, with the same parent-death guard."""
    return subprocess.run(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        preexec_fn=_parent_death_guard(),
    )


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of `text`."""
    return "\n".join(text.splitlines()[-lines:])


class PortTakenError(ScorerError):
    """Another process bound one of the server's ports before it could."""


class LocalServer(abc.ABC):
    """A server run as a child process, with all its files in one work dir.

    Subclasses say how to configure, launch and probe their server; this class
    runs the lifecycle. `start()` configures afresh (new ports, empty data);
    `restart()` relaunches on the same ports and data. A work dir passed in is
    left in place; one made here is removed by `close()`.
    """

    kind = "server"  # names the server in log lines and errors

    def __init__(self, work_dir: Path | None, ready_timeout_s: float) -> None:
        self.ready_timeout_s = ready_timeout_s
        self._given_work_dir = work_dir
        self._work_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._log_offsets: dict[Path, int] = {}

    @property
    def work_dir(self) -> Path:
        """Directory with the server's config, data and logs."""
        if self._work_dir is None:
            raise ScorerError(f"{self.kind} has not been started")
        return self._work_dir

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None when it is not running."""
        return None if self._process is None else self._process.pid

    @property
    def is_running(self) -> bool:
        """True while the child process exists (paused counts as running)."""
        return self._process is not None and self._process.poll() is None

    def ended(self) -> str | None:
        """How the process ended ('signal=SIGKILL'), or None while it runs."""
        if self._process is None or self._process.poll() is None:
            return None
        return _ending(self._process.returncode)

    def start(self) -> None:
        """Configure the server on fresh ports and start it; wait until ready."""
        if self._process is not None:
            raise ScorerError(f"{self.kind} is already running pid={self.pid}")

        self._work_dir = self._make_work_dir()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._configure()
            try:
                self._launch()
                return
            except PortTakenError:
                logger.info("%s port taken; retrying attempt=%d", self.kind, attempt)
        raise ScorerError(f"{self.kind} found no free port in {PORT_ATTEMPTS} tries")

    def restart(self) -> None:
        """Stop the server (if running) and start it on the same ports and data."""
        if self._work_dir is None:
            raise ScorerError(f"{self.kind} was never started, so cannot restart")

        self.stop()
        self._launch()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ask the server to shut down cleanly; kill it after `timeout_s`."""
        process = self._process
        if process is None:
            return

        process.terminate()
        if self._paused:
            # A stopped process handles the pending SIGTERM only once resumed.
            process.send_signal(signal.SIGCONT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing pid=%d", self.kind, process.pid)
            process.kill()
            process.wait()

        self._forget_process("stopped")

    def kill(self) -> None:
        """End the server at once with SIGKILL, as a crash would."""
        process = self._process
        if process is None:
            return

        process.kill()
        process.wait()
        self._forget_process("killed")

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: it keeps its sockets but answers nothing."""
        self._running_process().send_signal(signal.SIGSTOP)
        self._paused = True
        logger.info("%s paused pid=%s", self.kind, self.pid)

    def resume(self) -> None:
        """Let a paused server run again with SIGCONT."""
        self._running_process().send_signal(signal.SIGCONT)
        self._paused = False
        logger.info("%s resumed pid=%s", self.kind, self.pid)

    def close(self) -> None:
        """Stop the server and remove the work dir if this object made it."""
        self.stop()
        if self._given_work_dir is None and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Last lines the server logged since its latest launch, file by file."""
        parts = []
        for path in self._log_files():
            text = self._read_since_launch(path)
            if text.strip():
                parts.append(f"--- {path.name} ---\n{tail(text, lines)}")
        return "\n".join(parts) or "(the server logged nothing)"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            # `with` calls no __exit__ when __enter__ fails; clean up here.
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @abc.abstractmethod
    def _configure(self) -> None:
        """Pick ports and write config and data into the work dir."""

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """Command line that runs the server in the foreground."""

    @abc.abstractmethod
    def _is_ready(self) -> bool:
        """True once the server answers clients."""

    @abc.abstractmethod
    def _address(self) -> str:
        """Where clients reach the server, for log lines (no secrets)."""

    def _log_files(self) -> list[Path]:
        """Files the server writes its log to; subclasses add their own."""
        return [self.work_dir / "stdout.log"]

    def _make_work_dir(self) -> Path:
        if self._given_work_dir is not None:
            self._given_work_dir.mkdir(parents=True, exist_ok=True)
            return self._given_work_dir
        if self._work_dir is not None:
            return self._work_dir
        return Path(tempfile.mkdtemp(prefix=f"scorer-{self.kind}-"))

    def _launch(self) -> None:
        self._log_offsets = {path: _size(path) for path in self._log_files()}
        started = time.monotonic()
        self._process = spawn(self._command(), self.work_dir, self._log_files()[0])
        logger.info("%s starting pid=%d dir=%s", self.kind, self.pid, self.work_dir)

        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

        elapsed_s = time.monotonic() - started
        logger.info(
            "%s ready address=%s pid=%d startup_s=%.1f",
            self.kind,
            self._address(),
            self.pid,
            elapsed_s,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            exit_code = self._running_process().poll()
            if exit_code is not None:
                raise self._exit_error(exit_code)
            if self._is_ready():
                return
            time.sleep(READY_POLL_S)

        raise ScorerError(
            f"{self.kind} not ready after {self.ready_timeout_s:.0f} s at "
            f"{self._address()}; log tail:\n{self.log_tail()}"
        )

    def _exit_error(self, exit_code: int) -> ScorerError:
        logged = "\n".join(self._read_since_launch(p) for p in self._log_files())
        errors = [line for line in logged.splitlines() if _is_error_line(line)]
        first_errors = "\n".join(errors[:LOG_ERROR_LINES]) or "(none)"
        message = (
            f"{self.kind} exited with code {exit_code} while starting; "
            f"first errors:\n{first_errors}\nlog tail:\n{self.log_tail()}"
        )
        if BIND_ERROR in logged:
            return PortTakenError(message)
        return ScorerError(message)

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ScorerError(f"{self.kind} is not running")
        return self._process

    def _read_since_launch(self, path: Path) -> str:
        if not path.exists():
            return ""
        start = max(self._log_offsets.get(path, 0), _size(path) - LOG_READ_BYTES)
        with path.open("rb") as log:
            log.seek(start)
            return log.read().decode("utf-8", errors="replace")

    def _forget_process(self, how: str) -> None:
        process = self._running_process()
        key, value = _ending_field(process.returncode)
        # The key in the format, so that the JSON log lifts it (scorer.logs).
        logger.info(f"%s %s pid=%d {key}=%s", self.kind, how, process.pid, value)
        self._process = None
        self._paused = False


def _ending(exit_code: int | None) -> str:
    """How a process ended, for the log: the JVM answers SIGTERM with 143.

    128 + 15 is the shell's way of saying "ended by SIGTERM", which the JVM
    copies after a clean shutdown; shown bare, it read like a failure.
    """
    return "=".join(_ending_field(exit_code))


def _ending_field(exit_code: int | None) -> tuple[str, str]:
    """`_ending` as a log field: its name and value."""
    if exit_code is None:
        return "exit_code", "unknown"
    if exit_code < 0:
        try:
            return "signal", signal.Signals(-exit_code).name
        except ValueError:
            return "signal", str(-exit_code)
    if exit_code == SHELL_SIGNAL_BASE + signal.SIGTERM:
        return "exit_code", f"{exit_code} (shut down on SIGTERM)"
    return "exit_code", str(exit_code)


def _is_error_line(line: str) -> bool:
    # Kafka marks errors with its level; Redis has no level word for them.
    return " ERROR " in line or "FATAL" in line or BIND_ERROR in line


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
