"""A private loopback network per job, as each Fargate task has its own ``localhost``.

:class:`NetworkSandbox` makes a Linux network namespace with util-linux's ``unshare`` and enters
it with ``nsenter``, so two jobs' main apps can both listen on ``127.0.0.1:8080``. A small holder
process anchors the namespace: it brings ``lo`` up, then waits on a control socket and exits when
the socket reaches end-of-file, which happens when the sandbox is closed and also when the process
that made it dies, so no namespace outlives its endpoint.

A program inside the namespace cannot reach the host's loopback. Instead of a relay, the holder
creates listening sockets inside the namespace on request and hands them over with
``SCM_RIGHTS`` (:meth:`NetworkSandbox.listen`): a socket keeps the namespace it was created in,
so the endpoint's server, living in the host namespace, accepts on it what containers send to
``http://127.0.0.1:<port>``.

Where namespaces cannot be made (not Linux, no ``unshare``, no privileges and no user
namespaces), :class:`SharedHostNetwork` stands in: every job shares the host's loopback, so the
endpoint runs one job at a time. :func:`open_job_network` picks one of the two.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from types import TracebackType
from typing import IO, ClassVar, Protocol

__all__ = [
    "JobNetwork",
    "NetworkSandbox",
    "SandboxError",
    "SharedHostNetwork",
    "open_job_network",
]

log = logging.getLogger(__name__)

# The holder runs inside the new namespace. It is a separate program (not a fork of this one) so
# it carries none of the endpoint's threads or memory; -I -S and posix_spawnp rather than the
# subprocess module keep its start-up short. Its errors go to stderr, read when it fails.
_HOLDER_SOURCE = """
import os, socket, sys
control = socket.socket(fileno=int(sys.argv[1]))
control.set_inheritable(False)
try:
    ip = os.posix_spawnp("ip", ["ip", "link", "set", "lo", "up"], os.environ)
except OSError as exc:
    sys.exit("cannot run ip: %s" % exc)
if os.waitpid(ip, 0)[1]:
    sys.exit("ip link set lo up failed in the new network namespace")
control.send(b"ready")
while True:
    request = control.recv(64)
    if not request:
        break
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(request)))
        listener.listen(128)
    except OSError as exc:
        control.send(("oserror %d %s" % (exc.errno or 0, exc.strerror)).encode())
    else:
        socket.send_fds(control, [b"ok"], [listener.fileno()])
        listener.close()
"""

_MESSAGE_SIZE = 4096
_REQUEST_TIMEOUT = 10.0


class SandboxError(RuntimeError):
    """Raised when a network namespace cannot be made or its holder stops answering."""


class JobNetwork(Protocol):
    """The network a job's containers share: a private namespace or the host's loopback."""

    #: True when the job has a loopback of its own, so jobs may run side by side.
    isolated: bool

    def wrap(self, argv: list[str]) -> list[str]:
        """Return the command line that runs ``argv`` inside this network."""
        ...

    def listen(self, port: int) -> socket.socket | None:
        """Return a socket listening on ``127.0.0.1:port`` inside this network, if one is needed."""
        ...

    def close(self) -> None:
        """Release the network; idempotent."""
        ...


class NetworkSandbox:
    """A network namespace with its own loopback, anchored by a holder process.

    Make one with :meth:`create`; :meth:`available` says beforehand whether that can work here.

    :param holder: the holder process, already running inside the namespace and ready.
    :param control: this side of the control socket the holder answers on.
    :param user_namespace: whether the namespace is owned by a user namespace of its own (when
        not running as root), which ``nsenter`` must then enter as well.
    """

    isolated = True

    _probe_lock: ClassVar[threading.Lock] = threading.Lock()
    _probed: ClassVar[bool] = False
    _user_mode: ClassVar[bool | None] = None
    _unavailable: ClassVar[str | None] = None

    def __init__(
        self, holder: subprocess.Popen[bytes], control: socket.socket, *, user_namespace: bool
    ) -> None:
        self._holder = holder
        self._control = control
        self._user_namespace = user_namespace
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def available(cls) -> bool:
        """Return whether a namespace can be made here; the first call probes, later ones reuse it.

        The probe makes a sandbox, opens a socket in it, runs a program in it and closes it.
        """
        cls._probe()
        return cls._unavailable is None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Return why :meth:`available` is False, or None when it is True."""
        cls._probe()
        return cls._unavailable

    @classmethod
    def create(cls) -> NetworkSandbox:
        """Make a network namespace with ``lo`` up and return its sandbox.

        :raises SandboxError: when no namespace can be made here; the message says why.
        """
        cls._probe()
        if cls._user_mode is None:
            raise SandboxError(f"network namespaces are unavailable here: {cls._unavailable}")
        return cls._start(user_namespace=cls._user_mode)

    @property
    def holder_pid(self) -> int:
        """The process id of the holder, whose ``/proc/<pid>/ns/net`` is the namespace."""
        return self._holder.pid

    def wrap(self, argv: list[str]) -> list[str]:
        """Return a command line that runs ``argv`` inside the namespace.

        ``nsenter`` switches namespaces and then replaces itself with the program, so the process
        started is the program itself, with the same process id.

        :param argv: the program and its arguments.
        :raises SandboxError: when the sandbox is closed.
        """
        if self._closed:
            raise SandboxError("the network sandbox is closed; make a new one for this job")
        namespaces = f"/proc/{self._holder.pid}/ns"
        if self._user_namespace:
            # Without --preserve-credentials nsenter calls setgroups, which a user namespace
            # mapped by --map-root-user forbids.
            enter = [
                f"--user={namespaces}/user",
                f"--net={namespaces}/net",
                "--preserve-credentials",
            ]
        else:
            enter = [f"--net={namespaces}/net"]
        return ["nsenter", *enter, "--", *argv]

    def listen(self, port: int) -> socket.socket:
        """Return a TCP socket listening on ``127.0.0.1:port`` inside the namespace.

        The caller accepts connections on it from the host namespace; they come from programs
        inside the sandbox that connect to ``127.0.0.1:port``.

        :param port: the port inside the namespace; 0 picks a free one (read it from the socket).
        :raises OSError: when the holder cannot bind the port, with its errno (EADDRINUSE, ...).
        :raises SandboxError: when the sandbox is closed or its holder does not answer.
        """
        with self._lock:
            if self._closed:
                raise SandboxError("the network sandbox is closed; make a new one for this job")
            try:
                self._control.send(str(int(port)).encode())
                message, fds, _flags, _address = socket.recv_fds(self._control, _MESSAGE_SIZE, 1)
            except OSError as exc:
                failure: OSError | None = exc
            else:
                failure = None

        if failure is not None:
            # A late answer would be taken for the reply to the next request: give up on it.
            self.close()
            raise SandboxError(f"the sandbox holder did not answer: {failure}") from failure
        if message == b"ok" and len(fds) == 1:
            # Descriptors received over SCM_RIGHTS are inheritable; make this one like any other.
            os.set_inheritable(fds[0], False)
            listener = socket.socket(fileno=fds[0])
            log.debug("Listening on 127.0.0.1:%s in sandbox %s", port, self._holder.pid)
            return listener
        for fd in fds:
            os.close(fd)
        kind, _, detail = message.decode(errors="replace").partition(" ")
        if kind == "oserror":
            number, _, text = detail.partition(" ")
            raise OSError(int(number), f"{text} (127.0.0.1:{port} in the job's network sandbox)")
        raise SandboxError(f"the sandbox holder answered {message!r:.200} to a listen request")

    def close(self) -> None:
        """Stop the holder, which releases the namespace once no program inside uses it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._control.close()
        self._holder.kill()
        self._holder.wait()
        _close_pipe(self._holder.stderr)
        log.debug("Closed network sandbox %s", self._holder.pid)

    def __enter__(self) -> NetworkSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @classmethod
    def _start(cls, *, user_namespace: bool) -> NetworkSandbox:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        unshare = ["unshare", "--net"]
        if user_namespace:
            unshare = ["unshare", "--user", "--map-root-user", "--net"]
        argv = [*unshare, "--", sys.executable, "-I", "-S", "-c", _HOLDER_SOURCE]
        try:
            # The holder gets the only other end of the control socket: ours is not inheritable,
            # so when this process dies the holder reads end-of-file and exits.
            holder = subprocess.Popen(
                [*argv, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                cwd="/",
                # Out of the terminal's process group: a Ctrl-C meant for the endpoint must not
                # pull the network away from jobs while the endpoint shuts them down.
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise SandboxError(f"cannot start {argv[0]!r}: {exc}") from exc
        finally:
            theirs.close()

        ours.settimeout(_REQUEST_TIMEOUT)
        try:
            ready = ours.recv(_MESSAGE_SIZE)
        except OSError as exc:
            ready = f"no answer: {exc}".encode()
        if ready != b"ready":
            ours.close()
            holder.kill()
            _, stderr = holder.communicate()
            said = stderr.decode(errors="replace").strip() or ready.decode(errors="replace")
            raise SandboxError(f"{' '.join(unshare)} failed: {said or 'no message'}")

        log.debug("Made network sandbox %s (user namespace: %s)", holder.pid, user_namespace)
        return cls(holder, ours, user_namespace=user_namespace)

    @classmethod
    def _probe(cls) -> None:
        with cls._probe_lock:
            if cls._probed:
                return
            cls._probed = True
            cls._user_mode, cls._unavailable = _probe_modes()
        if cls._unavailable is not None:
            log.info(
                "Network sandboxes unavailable, jobs will share loopback: %s", cls._unavailable
            )


class SharedHostNetwork:
    """The host's own loopback, shared by every job: the stand-in where namespaces are missing.

    Two jobs' main apps would both want ``127.0.0.1:8080``, so the endpoint runs one job at a
    time with this network. :meth:`listen` returns None: containers reach the endpoint on the
    host's loopback, where it already listens.
    """

    isolated = False

    def wrap(self, argv: list[str]) -> list[str]:
        """Return ``argv`` unchanged: the program runs in the host's network."""
        return list(argv)

    def listen(self, port: int) -> socket.socket | None:
        """Return None: the endpoint's own listener on the host loopback already serves ``port``.

        :param port: the port containers will connect to.
        """
        return None

    def close(self) -> None:
        """Do nothing: there is nothing to release."""

    def __enter__(self) -> SharedHostNetwork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_job_network() -> NetworkSandbox | SharedHostNetwork:
    """Return a new network sandbox when this machine can make one, else the shared host network.

    :raises SandboxError: when namespaces work here but this one could not be made.
    """
    if NetworkSandbox.available():
        return NetworkSandbox.create()
    return SharedHostNetwork()


def _probe_modes() -> tuple[bool | None, str | None]:
    """Return (user-namespace mode, None) for the first mode that works, or (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, f"network namespaces need Linux, this is {sys.platform}"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return None, f"missing on PATH: {', '.join(missing)} (util-linux and iproute2)"

    # Root can make a plain namespace; anyone else, or root without CAP_SYS_ADMIN (as in an
    # unprivileged container), may still get one inside a user namespace.
    modes = [False, True] if os.geteuid() == 0 else [True]
    failures = []
    for user_namespace in modes:
        try:
            _check(user_namespace)
        except (SandboxError, OSError) as exc:
            failures.append(f"{'unshare --user' if user_namespace else 'unshare'}: {exc}")
            continue
        return user_namespace, None
    return None, "; ".join(failures)


def _check(user_namespace: bool) -> None:
    with NetworkSandbox._start(user_namespace=user_namespace) as sandbox:
        sandbox.listen(0).close()
        entered = subprocess.run(
            sandbox.wrap([sys.executable, "-I", "-S", "-c", ""]),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_REQUEST_TIMEOUT,
            check=False,
        )
        if entered.returncode:
            raise SandboxError(f"nsenter failed: {entered.stderr.strip() or entered.returncode}")


def _close_pipe(pipe: IO[bytes] | None) -> None:
    if pipe is not None:
        pipe.close()
