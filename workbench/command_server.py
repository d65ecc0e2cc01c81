"""A resident command server: ``workbench recon`` without paying Python's and torch's start-up every time.

BART starts in milliseconds; a Python command spends 1.5-3 s importing torch, numpy, scipy and h5py before it
reads a byte of the scan, which is most of a small reconstruction's time. So the first served command starts one
server per user, code version and environment: a process that imports those once, listens on a Unix socket and
*forks* a fresh child for every command. The child takes the client's standard streams (passed as file
descriptors), working directory, environment, umask, niceness and CPU affinity, runs the ordinary command line
(:func:`workbench.cli.main`) and exits; its exit status goes back to the client, which exits with it. The child
is forked ahead, while the server is idle (a *spare*, which also touches the heap a command's arrays will use), so
that neither the fork nor those page faults are paid by the command (the 2-coil GRE's CG-SENSE: 7200 page faults
in a fresh fork, 2700 in a spare; whole served command 0.86x, interleaved medians). So a served
command behaves as one run in-process, output, errors and files included, and commands never share state (each
child starts from the server's just-imported state). The server computes nothing itself: its OpenMP and intra-op
thread pools are never started, so forking is safe.

- **Which commands**: :data:`workbench.cli.SERVED_COMMANDS` (``recon``, ``plugins``). ``info`` starts fast without torch and stays
  in-process; the app never uses the server.
- **Opting out**: ``WORKBENCH_SERVER=0`` (or ``off``) runs every command in-process, as before. The server exits
  after ``WORKBENCH_SERVER_IDLE`` seconds without a command (default 900); ``workbench server stop`` ends it now.
- **Which server**: the socket's name hashes the Python executable, ``sys.path``, the environment variables read
  when torch and the runtime libraries load (``OMP_*``, ``MKL_*``, ``CUDA_*``, ``PYTHON*``, ``WORKBENCH_*``, ...)
  and the size and modification time of every ``.py`` file of the workbench and its built-in plugins. Edited code
  or a different environment gets a new server; a new server asks the older ones of the same interpreter to
  leave.
- **Safety**: the socket lives in a folder only the user can enter (``$XDG_RUNTIME_DIR/mri-workbench``, else
  ``/tmp/mri-workbench-UID``, created 0700; a folder owned by someone else or open to others is refused and the
  command runs in-process), and the server serves only processes of its own user (``SO_PEERCRED``). A lock held for
  the server's whole life makes sure one server owns a socket.
- **Signals**: Ctrl-C or SIGTERM/SIGHUP to the client are forwarded to the child (the command prints
  "interrupted" and exits 130, as in-process); a client that goes away takes its child with it.
- **Failures**: the server tells the client when it has started the command (``S``), then its exit status
  (``X`` + status). A server that cannot be reached, does not start within :data:`START_TIMEOUT_S`, cannot fork
  (``N``) or closes before ``S`` (idle, at that moment) means the command runs in-process: nothing has run yet. A
  child that dies from a signal reports ``128 + signal``, as a shell would.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import json
import os
import signal
import socket
import stat
import struct
import sys
import time
import zlib

# selectors is imported where it is used (the server, and a client that starts one): a client that finds its
# server running imports only what it needs, and hashlib's OpenSSL (4 ms) not at all (see _digest).

IDLE_S = 900.0
START_TIMEOUT_S = 60.0
MAX_REQUEST = 1 << 20  # bytes of a request's JSON
# Environment variables read when the server imports its libraries (or fixed at its start): a different value
# needs a different server. Everything else is read per command and is simply the client's.
ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "MALLOC_", "CUDA_", "NVIDIA_", "HIP_", "ROCM_",
                "PYTORCH_", "TORCH_", "PYTHON", "LD_", "WORKBENCH_", "HDF5_", "SCIPY_", "NUMPY_")
ENV_IGNORED = frozenset({"WORKBENCH_SERVER", "WORKBENCH_SERVER_IDLE", "WORKBENCH_RUNTIME_DIR",
                         "WORKBENCH_WEIGHT_STORE"})  # read per command
# Imported by the server before it accepts a command: what every served command needs.
PRELOAD = ("numpy", "torch", "scipy.io", "h5py", "workbench.jobs", "workbench.problem", "workbench.io.builtin",
           "workbench.scoring", "workbench.methods", "workbench.sampling", "workbench.solvers",
           "workbench.commands.recon", "workbench.commands.plugins", "workbench.volume", "workbench.paths",
           "workbench.fastmri_metrics")
BUILTIN_PACKAGE = "workbench_builtin_methods"  # the repository's plugins/ folder, installed under this name
_HEADER = struct.Struct("!I")
_STATUS = struct.Struct("!ci")  # b"X" and an exit status (a command's, or a control request's answer)
STARTED, NOT_STARTED, EXITED = b"S", b"N", b"X"  # what the server tells a waiting client, in that order
EVENT_READ = 1  # selectors.EVENT_READ
# Heap a spare touches before its command (see CommandServer._fork_spare): the 2-coil 160x160 GRE's CG-SENSE
# faulted in 7200 pages in a fresh fork, 2700 after 32 MB were touched ahead (64 MB: the same).
SPARE_PREFAULT = 32 << 20


# ---------------------------------------------------------------------------------------------- where and who
def enabled(environ: dict | None = None) -> bool:
    """False when ``WORKBENCH_SERVER`` says off (0, off, no, false) or the platform cannot pass descriptors."""
    env = os.environ if environ is None else environ
    if env.get("WORKBENCH_SERVER", "").strip().lower() in ("0", "off", "no", "false"):
        return False
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds") and sys.platform.startswith("linux")


def runtime_dir() -> str | None:
    """The user's private folder for sockets (created 0700), or None when it is not safe to use: owned by
    another user, a symbolic link, or open to group or others."""
    base = os.environ.get("WORKBENCH_RUNTIME_DIR")
    if not base:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(xdg, "mri-workbench") if xdg else os.path.join("/tmp", f"mri-workbench-{os.getuid()}")
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return base


def _code_files() -> list[str]:
    """Every .py file of the workbench package and of the built-in plugins folder beside it."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    roots = [pkg, os.path.join(os.path.dirname(pkg), "plugins")]
    out = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            out.extend(os.path.join(folder, f) for f in files if f.endswith(".py"))
    return sorted(out)


def family_key() -> str:
    """What a server of this interpreter shares with its successors: executable, sys.path, environment."""
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) and k not in ENV_IGNORED)
    blob = json.dumps([sys.executable, sys.version, sys.path, env])
    return _digest(blob.encode())


def code_key() -> str:
    """Size and modification time of every code file: edited code needs a new server."""
    parts = []
    for path in _code_files():
        try:
            st = os.stat(path)
        except OSError:
            continue
        parts.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n")
    return _digest("".join(parts).encode())


def _digest(data: bytes) -> str:
    """12 hex digits naming ``data`` (a socket's name, not a secret: the folder is private and the peer checked):
    CRC-32 and 16 bits of Adler-32, enough to tell environments and code versions apart, without hashlib."""
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"[:12]


def socket_path(folder: str | None = None) -> str | None:
    folder = folder or runtime_dir()
    if folder is None:
        return None
    path = os.path.join(folder, f"server-{family_key()}-{code_key()}.sock")
    return path if len(path.encode()) < 100 else None  # sun_path holds 108 bytes


# --------------------------------------------------------------------------------------------------- client
def run(argv: list[str]) -> int | None:
    """Run the command line through the server (starting one when there is none). The command's exit status,
    or None when no server could be used: then nothing has run and the caller runs the command in-process."""
    if not enabled():
        return None
    path = socket_path()
    if path is None:
        return None
    sock = _connect(path) or _start_server(path)
    if sock is None:
        return None
    with sock:
        try:
            _send_request(sock, argv)
        except OSError:
            return None  # the server went away before it took the command: nothing ran
        return _wait_for_status(sock)


def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        if _peer_uid(s) != os.getuid():  # the folder is private, but trust no server of another user
            raise PermissionError(path)
    except OSError:
        s.close()
        return None
    return s


def _send_request(sock: socket.socket, argv: list[str]) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    request = {
        "argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0), "affinity": affinity,
        "encoding": [sys.stdout.encoding, sys.stdout.errors, sys.stderr.encoding, sys.stderr.errors],
    }
    stdin = sys.stdin.fileno() if sys.stdin is not None else os.open(os.devnull, os.O_RDONLY)
    try:
        _send_message(sock, request, [stdin, 1, 2])
    finally:
        if sys.stdin is None:
            os.close(stdin)


def _send_message(sock: socket.socket, message: dict, fds: list[int]) -> None:
    """A request's framing (4-byte length, JSON), with ``fds`` on its first bytes: what :func:`_read_request`
    reads (commands and control requests to the server, commands from the server to a spare)."""
    payload = json.dumps(message).encode()
    data = _HEADER.pack(len(payload)) + payload
    sent = socket.send_fds(sock, [data], fds)
    if sent < len(data):
        sock.sendall(data[sent:])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _wait_for_status(sock: socket.socket) -> int | None:
    """Forward SIGINT / SIGTERM / SIGHUP to the command while waiting for its exit status. None when the server
    did not start the command (it could not fork, or it was closing): the caller runs it in-process."""
    def forward(signum, frame):
        try:
            sock.send(bytes([signum]))
        except OSError:
            pass

    # a signal this process ignores (SIGINT of a background job of a script) stays ignored, as in-process
    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
           if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        first = _recv_exactly(sock, 1)
        if first in (b"", NOT_STARTED):
            return None  # nothing ran
        if first == STARTED:
            first = _recv_exactly(sock, 1)
        rest = _recv_exactly(sock, _STATUS.size - 1) if first == EXITED else b""
        if len(rest) != _STATUS.size - 1:
            print("workbench: the command server ended without an exit status", file=sys.stderr)
            return 1
        return _STATUS.unpack(first + rest)[1]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _start_server(path: str) -> socket.socket | None:
    """Start a detached server for ``path`` and connect once it accepts commands; None when it cannot start
    (then the command runs in-process)."""
    import subprocess

    r, w = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-m", "workbench.command_server", "--socket", path, "--ready-fd", str(w)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(w,), start_new_session=True, close_fds=True)
    except OSError:
        os.close(r)
        os.close(w)
        return None
    os.close(w)
    import selectors

    deadline = time.monotonic() + START_TIMEOUT_S
    with os.fdopen(r, "rb") as ready:
        sel = selectors.DefaultSelector()
        sel.register(ready, selectors.EVENT_READ)
        answer = ready.read(1) if sel.select(timeout=START_TIMEOUT_S) else b""
    if answer == b"1":
        return _connect(path)
    while answer == b"0" and time.monotonic() < deadline:  # another server holds the lock: wait till it listens
        sock = _connect(path)
        if sock is not None:
            return sock
        time.sleep(0.05)
    return None  # end of file: the server failed to start


# --------------------------------------------------------------------------------------------------- server
class CommandServer:
    """Listens on ``path`` and forks one child per command (see the module docstring)."""

    def __init__(self, path: str, idle_s: float = IDLE_S):
        import selectors

        self.path = path
        self.idle_s = idle_s
        self.children: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.lock_fd: int | None = None
        self.identity: tuple[int, int] | None = None
        self.stopping = False
        self.spare: tuple[int, socket.socket] | None = None  # a child forked ahead: pid, its request channel

    def acquire(self) -> bool:
        """Take the socket's lock for the server's life; False when another server holds it."""
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for `workbench server status`
        self.lock_fd = fd
        return True

    def listen(self) -> None:
        try:
            os.unlink(self.path)  # a dead server's socket: the lock says nobody owns it
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self.identity = (st.st_dev, st.st_ino)  # the socket file this server made (a successor may replace it)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.sel.register(self.listener, EVENT_READ, "accept")
        # A child's exit wakes the loop at once (its client waits for the status): SIGCHLD writes to a pipe.
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.sel.register(self.wake_r, EVENT_READ, "child")

    def serve(self) -> None:
        last_busy = time.monotonic()
        try:
            while True:
                for key, _ in self.sel.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "child":
                        try:
                            os.read(self.wake_r, 512)
                        except BlockingIOError:
                            pass
                    else:
                        self._control(key.fileobj, key.data)
                self._reap()
                if self.children:
                    last_busy = time.monotonic()
                elif self.stopping or time.monotonic() - last_busy > self.idle_s or not self._still_mine():
                    return
                else:
                    self._fork_spare()
        finally:
            self.close()

    def close(self) -> None:
        if self.spare is not None:  # end of file on its channel: the spare exits
            self.spare[1].close()
            self.spare = None
        if self.listener is not None:
            if self._still_mine():
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            self.listener.close()
            self.listener = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def _still_mine(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(True)
        conn.settimeout(10.0)
        try:
            if _peer_uid(conn) != os.getuid():
                raise PermissionError("a process of another user")
            request, fds = _read_request(conn)
        except Exception as exc:  # noqa: BLE001 - any malformed request (deep JSON nesting too): refuse it, go on
            _send_status(conn, 2)
            conn.close()
            print(f"command server: refused a connection: {exc}", file=sys.stderr)
            return
        control = request.get("control")
        if control is not None:  # stop (after the running commands) or status (how many run)
            _close_all(fds)
            self.stopping = self.stopping or control == "stop"
            _send_status(conn, len(self.children) if control == "status" else 0)
            conn.close()
            return
        pid = self._hand_to_spare(request, fds)
        if pid is None:
            try:
                pid = os.fork()
            except OSError as exc:  # no memory or process slots: the client runs the command itself
                _close_all(fds)
                _send(conn, NOT_STARTED)
                conn.close()
                print(f"command server: cannot fork: {exc}", file=sys.stderr)
                return
            if pid == 0:  # the child: never returns
                self._become_child()
                _run_child(conn, request, fds)
        _close_all(fds)
        conn.settimeout(None)
        _send(conn, STARTED)  # from here the command is running: the client must not run it again
        self.children[pid] = conn
        self.sel.register(conn, EVENT_READ, pid)

    def _become_child(self) -> None:
        """In a child just forked: drop what belongs to the server (a child never returns to it)."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.sel.close()
        self.listener.close()
        for other in self.children.values():
            other.close()
        if self.spare is not None:
            self.spare[1].close()
        os.close(self.lock_fd)  # the lock is the server's alone: a child holding it would keep the socket taken

    def _fork_spare(self) -> None:
        """Fork the next command's process now, while nothing runs: the fork and the first touch of the memory a
        command allocates (:data:`SPARE_PREFAULT`) are paid before a command arrives instead of by it. The spare
        waits on its channel for a request (:func:`_send_message`) and runs it as any child; end of file ends it."""
        if self.spare is not None or self.stopping:
            return
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:
            return
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:  # the spare: never returns
            ours.close()
            self.spare = None
            self._become_child()
            _run_spare(theirs)
        theirs.close()
        self.spare = (pid, ours)

    def _hand_to_spare(self, request: dict, fds: list[int]) -> int | None:
        """Give the command to the spare; its pid, or None when there is none or it is gone (then fork)."""
        if self.spare is None:
            return None
        pid, channel = self.spare
        self.spare = None
        try:
            channel.settimeout(10.0)
            _send_message(channel, request, fds)
        except OSError:
            return None
        finally:
            channel.close()
        return pid

    def _control(self, conn: socket.socket, pid: int) -> None:
        """A byte from a waiting client is a signal for its command; end of file: the client is gone."""
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        sigs = list(data) if data else [signal.SIGTERM]  # the client is gone: so is its command
        for sig in sigs:
            if sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if not data:
            self.sel.unregister(conn)

    def _reap(self) -> None:
        while self.children or self.spare is not None:  # a spare that died unused is reaped too
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                if self.spare is not None and self.spare[0] == pid:  # the spare died unused: fork another later
                    self.spare[1].close()
                    self.spare = None
                continue
            code = os.waitstatus_to_exitcode(status)
            _send_status(conn, code if code >= 0 else 128 - code)
            try:
                self.sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """The request and the descriptors that came with it; on any error the descriptors are closed."""
    msg, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    try:
        if len(msg) < _HEADER.size:
            raise ValueError("a truncated request")
        (size,) = _HEADER.unpack(msg[:_HEADER.size])
        if size > MAX_REQUEST:
            raise ValueError(f"a request of {size} bytes (at most {MAX_REQUEST})")
        body = msg[_HEADER.size:]
        body += _recv_exactly(conn, size - len(body))
        if len(body) < size:
            raise ValueError("a truncated request")
        request = json.loads(body[:size])
        if not isinstance(request, dict):
            raise ValueError("a request that is not an object")
        if "control" not in request and (len(fds) != 3 or not isinstance(request.get("argv"), list)):
            raise ValueError("a command without its three standard streams")
    except BaseException:
        _close_all(fds)
        raise
    return request, list(fds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _send_status(conn: socket.socket, code: int) -> None:
    _send(conn, _STATUS.pack(EXITED, int(code)))


def _send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError:
        pass


def _run_spare(channel: socket.socket) -> None:
    """The spare's life: touch :data:`SPARE_PREFAULT` bytes of heap (``bytearray`` zeroes every page; freed,
    glibc keeps them for the command's arrays: ``workbench.threads.keep_freed_memory``), wait for a request, run
    it. End of file (the server left; no client waits) or anything else before the command: exit."""
    try:
        bytearray(SPARE_PREFAULT)  # allocated (every page zeroed, so faulted in) and freed at once
        request, fds = _read_request(channel)
    except BaseException:  # noqa: BLE001 - a spare must end with os._exit, never return to the server
        os._exit(1)
    _run_child(channel, request, fds)  # ends with os._exit


def _run_child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """Become the client's command: its streams, folder, environment and process settings; then run it."""
    code = 1
    try:
        conn.close()  # the parent keeps the connection: it forwards signals and reports the exit status
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        enc = request.get("encoding") or [None] * 4
        sys.stdin = os.fdopen(0, "r", closefd=False)
        sys.stdout = os.fdopen(1, "w", buffering=1 if os.isatty(1) else -1, encoding=enc[0], errors=enc[1],
                               closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, encoding=enc[2], errors=enc[3], closefd=False)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        os.umask(int(request["umask"]))
        try:
            nice = int(request["nice"])
            if nice > os.getpriority(os.PRIO_PROCESS, 0):
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            if request.get("affinity"):
                os.sched_setaffinity(0, request["affinity"])
        except (OSError, AttributeError, ValueError):
            pass
        from workbench.cli import run_command

        argv = [str(a) for a in request["argv"]]
        sys.argv = ["workbench", *argv]
        code = run_command(argv)
    except SystemExit as exc:  # argparse's --help and usage errors, sys.exit in a command: as in-process
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            code = 1
            _say(str(exc.code))
    except BaseException as exc:  # noqa: BLE001 - a child must end with os._exit, never return to the server
        _say(f"workbench: the command server's child failed: {exc!r}")
    finally:
        for stream in (sys.stdout, sys.stderr):  # os._exit skips the interpreter's flush of buffered output
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
                pass
        os._exit(code)


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr)
    except Exception:  # noqa: BLE001
        pass


def _stop_older(path: str) -> None:
    """Ask the other servers of this interpreter family (older code) to leave once idle; remove the sockets of
    servers that died without removing theirs."""
    folder, name = os.path.split(path)
    prefix = name.rsplit("-", 1)[0] + "-"
    others = {f.removesuffix(".lock") for f in os.listdir(folder) if f.startswith(prefix)}
    for other in sorted(others - {name}):
        if other.endswith(".sock"):
            other = os.path.join(folder, other)
            if control(other, "stop") is None and server_pid(other) is None:
                for leftover in (other, other + ".lock"):
                    try:
                        os.unlink(leftover)
                    except OSError:
                        pass


def server_pid(path: str) -> int | None:
    """The pid of the live server holding ``path``'s lock, or None when no server holds it."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: a server is alive
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def control(path: str, what: str) -> int | None:
    """Send ``stop`` or ``status`` to the server at ``path``: its answer (status: running commands), or None."""
    sock = _connect(path)
    if sock is None:
        return None
    with sock:
        sock.settimeout(5.0)
        try:
            _send_message(sock, {"control": what}, [])
            data = _recv_exactly(sock, _STATUS.size)
        except OSError:
            return None
    return _STATUS.unpack(data)[1] if len(data) == _STATUS.size and data[:1] == EXITED else None


def servers(folder: str | None = None) -> list[str]:
    """Sockets of running servers in the user's folder."""
    folder = folder or runtime_dir()
    if folder is None or not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.startswith("server-") and f.endswith(".sock"))


def _preload_builtin_methods() -> None:
    """Import the built-in methods' modules (their code is in the server's key; a third party's plugins are
    imported by each command, so an updated one is always seen) and read their parameter declarations (kept per
    class by :func:`workbench.methods.param_specs`). One that fails is left to the command, which reports it as
    usual."""
    import importlib

    from workbench.methods import Method, _method_entry_points, param_specs

    for ep in _method_entry_points():
        if ep.module.split(".")[0] == BUILTIN_PACKAGE:
            try:
                module = importlib.import_module(ep.module)
                for obj in vars(module).values():
                    if isinstance(obj, type) and issubclass(obj, Method) and obj is not Method:
                        param_specs(obj.Params)
            except Exception:  # noqa: BLE001 - the command reports it
                pass


def _preload_parsers() -> None:
    """The served commands' argument parsers (5 ms a command otherwise)."""
    from workbench.cli import SERVED_COMMANDS, _build_parser

    for command in SERVED_COMMANDS:
        _build_parser(command)


def _preload_optional_readers() -> None:
    """The twix reader's twixtools (0.1-0.3 s a command otherwise), through the reader's own lazy import."""
    try:
        from workbench.io.twix import _import_twixtools

        _import_twixtools()
    except Exception:  # noqa: BLE001 - not installed or broken: the command that needs it reports it
        pass


def main(argv: list[str] | None = None) -> int:
    import argparse
    import importlib

    p = argparse.ArgumentParser(prog="python -m workbench.command_server")
    p.add_argument("--socket", required=True)
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--idle", type=float, default=float(os.environ.get("WORKBENCH_SERVER_IDLE", IDLE_S)))
    args = p.parse_args(argv)
    os.chdir("/")  # hold no user folder busy; each child moves to its client's
    server = CommandServer(args.socket, idle_s=args.idle)
    ready = os.fdopen(args.ready_fd, "wb") if args.ready_fd is not None else None
    if not server.acquire():
        if ready:
            ready.write(b"0")
            ready.close()
        return 0
    try:
        for name in PRELOAD:
            importlib.import_module(name)
        _preload_builtin_methods()
        _preload_optional_readers()
        _preload_parsers()
        # The imported objects go to the permanent generation: a child's garbage collections then do not touch
        # (and so copy) every page the server holds.
        gc.collect()
        gc.freeze()
        server.listen()
        server._fork_spare()
    except BaseException:
        server.close()
        if ready:
            ready.close()  # end of file: the client runs its command in-process
        raise
    if ready:
        ready.write(b"1")
        ready.close()
    _stop_older(args.socket)
    server.serve()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
