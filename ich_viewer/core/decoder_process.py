"""Compressed pixel data is decoded in separate processes, so that no file can take the viewer down.

The native decoders behind pydicom (OpenJPEG, libjpeg-turbo and CharLS through imagecodecs, a Rust RLE
decoder) are C, C++ and Rust. The loader checks what they would reject, but a hostile stream could
still crash one (a segfault, an abort) or send it into a loop. In a child process that costs one slice
("the decoder crashed"), never the window or a triage run; a child past the time limit is killed,
which a thread cannot be; and the child's address space is capped, so no stream can exhaust memory.

Children come from a fork server that has the decoders imported (POSIX: the first start ~0.5 s, each
later one ~15 ms, and the children share the server's memory pages), or are spawned (Windows, or a
process forked from one that already started the fork server). :func:`prestart` warms the pool in the
background when an application starts, so the first slice is not held up. Uncompressed and deflated
data never come here: numpy and zlib decode them in-process.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from typing import Any, Callable

from ich_viewer.core.errors import DecodeError

#: A child still decoding one slice after this long is killed; a CT slice decodes in milliseconds.
TIME_LIMIT_S = 15.0
#: Address space a child may add to what it had at start: one frame is at most 4096x4096 (header checks).
MEMORY_LIMIT_BYTES = 1 << 30


#: The argument that makes a frozen build's executable serve as a decoder process.
SERVE_FLAG = "--decoder-process"
READY = "ready"
#: What a child sends as it takes a request: a child that dies before sending it never had the slice.
TAKEN = "taken"
#: What a child imports before it says it is ready: the decoders (by name: this module is below them).
PRELOAD = ("ich_viewer.core.dicom_pixels",)
_LENGTH = struct.Struct("<Q")
PIPE_BYTES = 1 << 20


class DecoderFailure(DecodeError):
    """The decoder process died or was stopped (not an error that the decoder itself reported)."""


class _NotTaken(Exception):
    """The child died before it took the request (killed while idle): not the slice's fault."""


def pool_size() -> int:
    """At most four children (~40 MB each): compressed CT decodes in milliseconds a slice."""
    return max(1, min(4, os.cpu_count() or 1))


def run(function: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """``function(*args)`` in a decoder process. ``function`` must be importable by name (a module-level
    function). A :class:`DecodeError` it raises comes back as itself; a crash, a kill or a run past
    ``timeout`` (default :data:`TIME_LIMIT_S`) raises :class:`DecoderFailure`, and the child is replaced
    for the next call."""
    return _current_pool().run(function, args, TIME_LIMIT_S if timeout is None else timeout)


def prestart(count: int | None = None) -> threading.Thread:
    """Start ``count`` children (default: the pool's size) one after another in a background thread
    (returned, for whoever wants to wait), so that they cost one core at a time while an application
    starts; any still missing start when a series needs them."""
    pool = _current_pool()
    thread = threading.Thread(target=pool.fill, args=(count or pool.size,), name="decoder-prestart", daemon=True)
    thread.start()
    return thread


def child_pids() -> list[int]:
    """Process ids of the children, idle and busy (for tests and benches)."""
    return _current_pool().pids()


# --------------------------------------------------------------------------- the pool (parent side)


class _Child:
    """One decoder process and the pipes to it; used by one thread at a time."""

    def __init__(self):
        self.process = subprocess.Popen(
            _command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_environment(),
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))  # no console window from a GUI on Windows
        self.alive, self._killed_at_limit = True, False
        _widen(self.process.stdin)
        _widen(self.process.stdout)
        if _read_message(self.process.stdout) != READY:  # imports done: the first call is not held up
            self.stop()
            raise OSError(f"the decoder process did not start ({_exit_reason(self.process)})")

    def run(self, function, args, timeout: float):
        watchdog = threading.Timer(timeout, self._kill_at_limit)  # a blocked read ends when the child dies
        watchdog.start()
        taken = reply = None
        try:
            _write_message(self.process.stdin, (function, args))
            taken = _read_message(self.process.stdout)
            reply = _read_message(self.process.stdout)
        except Exception:  # noqa: BLE001 - a broken pipe, or a reply a dying child left unreadable
            pass
        finally:
            watchdog.cancel()
        if taken != TAKEN and not self._killed_at_limit:
            self.stop()
            raise _NotTaken(_exit_reason(self.process))
        if reply is None:  # the child died: a crash, an abort, killed from outside or at the time limit
            self.stop()
            if self._killed_at_limit:
                raise DecoderFailure(f"the decoder was stopped after {timeout:.0f} s")
            raise DecoderFailure(f"the decoder crashed ({_exit_reason(self.process)})")
        outcome, value = reply if isinstance(reply, tuple) and len(reply) == 2 else ("error", "an unreadable reply")
        if outcome == "ok":
            return value
        raise DecodeError(value)

    def _kill_at_limit(self) -> None:
        self._killed_at_limit = True
        self.process.kill()

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.alive = False
        self.process.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill that did not take
            pass


def _widen(pipe) -> None:
    """A slice (512 KB) in one pipe write instead of eight 64 KB round trips (Linux; ~1 ms a slice)."""
    if sys.platform.startswith("linux"):
        import fcntl

        try:
            fcntl.fcntl(pipe.fileno(), 1031, PIPE_BYTES)  # F_SETPIPE_SZ
        except OSError:  # over /proc/sys/fs/pipe-max-size: the default still works
            pass


def _command() -> list[str]:
    if getattr(sys, "frozen", False):  # the frozen application's own entry point serves (ich_viewer.__main__)
        return [sys.executable, SERVE_FLAG]
    # -c, not multiprocessing's spawn: spawn re-runs the parent's main script in the child, which an
    # unguarded script (a notebook export, a bench) turns into endless processes.
    return [sys.executable, "-c", "from ich_viewer.core.decoder_process import serve; serve()"]


def _environment() -> dict[str, str]:
    """This process's environment, with its import path (tests and scripts extend sys.path at run time)."""
    path = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _exit_reason(process: subprocess.Popen) -> str:
    try:
        code = process.wait(5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        return "not answering"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _write_message(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_message(stream):
    """The next message, or None at the end of the stream (the other side is gone)."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(header)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


class _Pool:
    """Up to ``size`` children, started on demand in the background (a start takes ~0.6 s) while the ones
    already running keep serving."""

    def __init__(self, size: int):
        self.size = size
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()  # alive, idle or busy
        self._starting = 0
        self._start_failure: str | None = None
        self._condition = threading.Condition()

    def run(self, function, args, timeout: float):
        """On a child that died before it took the request (killed while idle, after ``_acquire`` saw it
        alive), the call is made again once on another child."""
        for attempt in (1, 2):
            child = self._acquire()
            try:
                return child.run(function, args, timeout)
            except _NotTaken as exc:
                if attempt == 2:
                    raise DecoderFailure(f"the decoder process died before decoding ({exc})") from None
            finally:
                with self._condition:
                    if child.alive:
                        self._idle.append(child)
                    else:
                        self._children.discard(child)  # replaced when a call next needs one
                    self._condition.notify_all()

    def _acquire(self) -> _Child:
        with self._condition:
            while True:
                while self._idle:
                    child = self._idle.pop()
                    if child.is_alive():
                        return child
                    child.stop()  # died while idle (killed from outside): not this slice's fault
                    self._children.discard(child)
                if self._start_failure is not None and not self._children and not self._starting:
                    failure, self._start_failure = self._start_failure, None  # the next call tries again
                    raise DecoderFailure(f"no decoder process could be started ({failure})")
                if len(self._children) + self._starting < self.size:
                    self._starting += 1
                    threading.Thread(target=self._add_child, name="decoder-start", daemon=True).start()
                self._condition.wait()

    def _add_child(self) -> None:
        """Start one child (``_starting`` already counts it) and make it idle, or record why it failed."""
        try:
            child, failure = _Child(), None
        except Exception as exc:  # noqa: BLE001 - a broken installation: each waiting call is told
            child, failure = None, f"{type(exc).__name__}: {exc}"
        with self._condition:
            self._starting -= 1
            if child is not None:
                self._children.add(child)
                self._idle.append(child)
            else:
                self._start_failure = failure
            self._condition.notify_all()

    def fill(self, count: int) -> None:
        """Start children until ``count`` exist (at most ``size``), one after another in this thread."""
        while True:
            with self._condition:
                if len(self._children) + self._starting >= min(count, self.size):
                    return
                self._starting += 1
            self._add_child()
            with self._condition:
                if self._start_failure is not None:
                    return

    def pids(self) -> list[int]:
        with self._condition:
            return sorted(child.process.pid for child in self._children)


_pool: _Pool | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _current_pool() -> _Pool:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():  # first use, or a forked child of the pool's owner
            _pool, _pool_pid = _Pool(pool_size()), os.getpid()
        return _pool


# --------------------------------------------------------------------------- the child


def serve() -> int:
    """A decoder process: calls in on stdin, results out on stdout, until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the parent, which stops us
    # The messages keep the original stdin and stdout to themselves: a native library that prints
    # (to fd 1) writes to stderr instead of corrupting a reply.
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for module in PRELOAD:  # before the parent's first call, so that call is not held up by imports
        importlib.import_module(module)
    _cap_address_space(MEMORY_LIMIT_BYTES)
    _no_core_files()
    if not _send(replies, READY):
        return 0  # the parent finished before this spare process was needed
    while True:
        try:
            request = _read_message(requests)
        except (OSError, ValueError, pickle.UnpicklingError):
            request = None
        if request is None:
            return 0  # the parent exited or died
        function, args = request
        if not _send(replies, TAKEN):
            return 0
        try:
            reply = ("ok", function(*args))
        except DecodeError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            reply = ("error", "its data would not fit in the decoder's memory limit")
        except BaseException as exc:  # every decoder raises its own types; a Rust panic is a BaseException
            if isinstance(exc, SystemExit):
                raise
            reply = ("error", f"the decoder failed ({type(exc).__name__})")
        if not _send(replies, reply):
            return 0


def _send(replies, message) -> bool:
    """Write one message; False, quietly, when the parent has gone (a broken pipe is how a spare process
    learns that a short triage run is over, and its traceback would land after the user's shell prompt)."""
    try:
        _write_message(replies, message)
        return True
    except (OSError, ValueError, MemoryError):
        try:
            replies.close()  # drops the unsent bytes now, not in a second flush at interpreter exit
        except (OSError, ValueError):
            pass
        return False


def _no_core_files() -> None:
    """A crashing decoder must not dump core: a core file holds the slice's pixels and would be written
    into the user's working folder (where ``ulimit -c`` and the system allow it)."""
    try:
        import resource
    except ImportError:  # Windows: no core files
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _cap_address_space(extra: int) -> None:
    """RLIMIT_AS = what the child maps now + ``extra`` (Linux; elsewhere the time limit still applies)."""
    if not sys.platform.startswith("linux"):
        return
    import resource

    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or limit < soft:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
