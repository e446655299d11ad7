"""The host agent: one process per host link, many jobs (agent mode of ssh, paramiko, cmdline).

Started once per link to a host (``python3 -I -S -c ...``, like
:mod:`lofarexec.hostprograms.launch_wrapper`): one ``ssh`` process per host for the ``ssh``
backend, one session channel per connection for ``paramiko``, one run of the template per host
for ``cmdline`` with ``launch = agent``. Kept up while that link lives, it starts the host's
jobs on request: a job costs a ``posix_spawn`` on the host, not an SSH session, a shell and a
Python start-up (~15 ms of host CPU per job). Standard library only, Python >= 3.8.

It keeps the wrapper's guarantees, for every job it runs:

* **Kill reaches the host.** A kill request TERMs the job's process group, then KILLs it after
  the job's grace period. End-of-file on stdin (the connection closed or lost), SIGHUP or
  SIGTERM kill every job the same way, and the agent exits once they are gone. So does silence:
  given a limit (its first argument, seconds), the agent expects a frame at least that often
  (the control node pings while it has nothing else to say), so a link that died without a
  word (a pulled cable: neither end sees EOF for a long time) does not leave the jobs running.
  It pings back as often (every quarter of the limit while it has nothing else to say), so
  that the control node gives up on a frozen host after the same limit.
* **Secrets stay off command lines.** argv and environment arrive on stdin, never in ``ps``.
* **The exit status is the node's, exactly**, reported in its own frame (negative: killed by
  that signal), after all of the job's stdout and stderr frames.

Wire format: see :mod:`lofarexec.transport.agent_frames`, its control half. The agent's
own stderr is the link's stderr: a crash of the agent shows there.

**A second route to each status.** Given a marker (argument 2), the agent appends ``number
status`` for each job not killed for a lost link to ``$TMPDIR/lofarexec-agent-<marker>``, a new
file read over a fresh session by a control node that gave up on a stalled link (removed by the
agent at a clean end: end-of-file, no job running; else by that reader).

What one turn of its loop says (jobs started, output, ends) goes out in one write at the start
of the next turn: each write costs the link a packet, and ``sshd`` and ``ssh`` a wake-up and
crypto. Back-pressure: while over ``_OUTBOX_LIMIT`` bytes wait to be sent, the agent stops
reading its jobs' pipes (a job writing faster than the link blocks, as on a terminal), never
stdin: a kill always lands.
"""

import posix  # not ``os``: its import (collections.abc, stat, posixpath) is ~1 ms of each start
import select
import sys
import time

try:  # the C module, without the ``struct`` module around it
    from _struct import Struct
except ImportError:  # pragma: no cover - not CPython
    from struct import Struct

try:  # the C module: ``signal`` itself imports enum, a few ms more of every agent's start
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

_HEADER = Struct("!cII")
_CHUNK = 65536
_OUTBOX_LIMIT = 4 << 20
#: Seconds a job's pipes may stay open after it exited (something it left outside its process
#: group still holds them); then the job is reported without the rest of its output.
_PIPE_LINGER = 5.0
#: Pings per silence limit (the control side's SILENCE_FACTOR: it gives up after as many).
_PINGS_PER_LIMIT = 4


class _Job:
    __slots__ = ("abandoned", "exited_at", "grace", "kill_at", "killed", "number", "pid",
                 "pipes", "status")

    def __init__(self, number, pid, pipes, grace):
        self.number = number
        self.pid = pid
        self.pipes = pipes  # fd -> frame kind (b"O" or b"E"), while open
        self.grace = grace
        self.status = None
        self.exited_at = None
        self.kill_at = None  # when a TERMed job gets its KILL
        self.killed = False
        self.abandoned = False  # killed because the link ended: its status is not its own


class _Poller:
    """``select.poll`` with each descriptor's data (``selectors`` would cost its imports at
    every agent's start; ``poll`` also takes any kind of descriptor as stdin)."""

    def __init__(self):
        self.poll, self.data = select.poll(), {}  # data: fd -> what it is

    def register(self, fd, events, data):
        self.poll.register(fd, events)
        self.data[fd] = data

    def unregister(self, fd):
        self.poll.unregister(fd)
        del self.data[fd]

    def select(self, timeout):
        """(fd, its data) of each descriptor ready (or at its end) within ``timeout`` s."""
        events = self.poll.poll(None if timeout is None else int(timeout * 1000 + 0.999))
        return [(fd, self.data[fd]) for fd, _ in events if fd in self.data]


_READ, _WRITE = select.POLLIN, select.POLLOUT


def status_path(marker):
    """Where the agent keeps its jobs' statuses (the reader's shell command names the same)."""
    folder = (posix.environ.get(b"TMPDIR") or b"/tmp").decode("utf-8", "surrogateescape")
    return folder + "/lofarexec-agent-" + marker


class Agent:
    """Serves start and kill requests from stdin until stdin ends and every job is gone."""

    def __init__(self, silence_limit=0.0, marker=""):
        self.silence_limit = silence_limit  # seconds without a frame: the control node is gone
        self.heard = self.said = time.monotonic()
        self.ping_interval = silence_limit / _PINGS_PER_LIMIT  # 0: the control node never asks
        self.selector = _Poller()
        self.jobs = {}  # number -> _Job
        self.by_pid = {}
        self.outbox = bytearray()
        self.inbox = bytearray()
        self.reading_pipes = True
        self.quitting = False
        self.clean_end = False
        self.status_file = status_path(marker) if marker else None
        self.statuses = self.open_statuses()
        self.host_environment = dict(posix.environ)  # what a job's environment is laid over
        for fd in (0, 1):
            posix.set_blocking(fd, False)
        self.wake_read, wake_write = posix.pipe()
        for fd in (self.wake_read, wake_write):
            posix.set_blocking(fd, False)
            posix.set_inheritable(fd, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd hears it
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())
        self.selector.register(0, _READ, "stdin")
        self.selector.register(self.wake_read, _READ, "wake")
        self.send(b"H", 0, b"1")

    # -- requests --------------------------------------------------------------------------
    def start(self, number, payload):
        if self.quitting:
            self.send(b"F", number, b"the host's agent is stopping")
            return
        fields = payload.split(b"\0")
        grace, argc = float(fields[0]), int(fields[1])
        argv = fields[2:2 + argc]
        environment = dict(self.host_environment)
        for entry in fields[2 + argc:]:
            name, _, value = entry.partition(b"=")
            environment[name] = value
        out_read, out_write = posix.pipe()  # not inheritable: only the dup2 copies reach the job
        err_read, err_write = posix.pipe()
        for fd in (out_read, err_read):
            posix.set_blocking(fd, False)
        # posix_spawnp searches the caller's PATH, not the job's: make them the same.
        path = environment.get(b"PATH", b"/bin:/usr/bin")
        if posix.environ.get(b"PATH") != path:
            posix.putenv(b"PATH", path)
            posix.environ[b"PATH"] = path
        argv = argv or [b""]
        try:  # Python ignores SIGPIPE and SIGXFSZ; the job gets the defaults, as from a shell
            pid = posix.posix_spawnp(
                argv[0], argv, environment, setsid=True,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ), file_actions=[
                    (posix.POSIX_SPAWN_OPEN, 0, "/dev/null", posix.O_RDONLY, 0),
                    (posix.POSIX_SPAWN_DUP2, out_write, 1),
                    (posix.POSIX_SPAWN_DUP2, err_write, 2)])
        except (OSError, ValueError) as exc:
            for fd in (out_read, out_write, err_read, err_write):
                posix.close(fd)
            why = getattr(exc, "strerror", None) or str(exc)
            name = argv[0].decode("utf-8", "replace") if argv else "(empty argv)"
            self.send(b"F", number, ("cannot start %r: %s" % (name, why)).encode())
            return
        posix.close(out_write)
        posix.close(err_write)
        self.send(b"P", number, str(pid).encode("ascii"))
        job = _Job(number, pid, {out_read: b"O", err_read: b"E"}, grace)
        self.jobs[number] = job
        self.by_pid[pid] = job
        if self.reading_pipes:
            for fd in job.pipes:
                self.selector.register(fd, _READ, job)

    def kill(self, job):
        """TERM the job's group now, KILL it after its grace (if it has not ended by then)."""
        if job.status is not None or job.killed:
            return
        job.killed = True
        _signal_group(job.pid, signal.SIGTERM)
        job.kill_at = time.monotonic() + job.grace

    def stop(self):
        """The control node is gone or asked us to go: kill every job, then exit."""
        self.quitting = True
        for job in list(self.jobs.values()):
            job.abandoned = job.abandoned or job.status is None
            self.kill(job)

    # -- the loop --------------------------------------------------------------------------
    def run(self):
        while not (self.quitting and not self.jobs):
            self.flush()  # what the last turn said, in one write
            self.flow()
            for fd, data in self.selector.select(self.timeout()):
                if data == "stdin":
                    self.read_requests()
                elif data == "wake":
                    self.reap()
                elif data == "stdout":
                    self.flush()
                else:
                    self.read_pipe(fd, data)
            self.reap()
            self.run_timers()
            if self.ping_interval and self.ping_due_at() <= time.monotonic():
                self.send(b"N", 0, b"")
            if (self.silence_limit and not self.quitting
                    and time.monotonic() - self.heard > self.silence_limit):
                posix.write(2, ("lofarexec host agent: no word from the control node for %g "
                                "s: killing every job\n" % self.silence_limit).encode())
                self.stop()
        self.last_words()
        self.close_statuses()

    def read_requests(self):
        try:
            chunk = posix.read(0, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(0)
            self.clean_end = not self.quitting and not self.jobs
            self.stop()
            return
        self.heard = time.monotonic()
        self.inbox += chunk
        while len(self.inbox) >= _HEADER.size:
            kind, number, length = _HEADER.unpack_from(self.inbox)
            if len(self.inbox) < _HEADER.size + length:
                break
            payload = bytes(self.inbox[_HEADER.size:_HEADER.size + length])
            del self.inbox[:_HEADER.size + length]
            if kind == b"S":
                self.start(number, payload)
            elif kind == b"K" and number in self.jobs:
                self.kill(self.jobs[number])

    def read_pipe(self, fd, job):
        try:
            data = posix.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.send(job.pipes[fd], job.number, data)
            return
        self.close_pipe(job, fd)
        self.finish_if_done(job)

    def close_pipe(self, job, fd):
        del job.pipes[fd]
        if self.reading_pipes:
            self.selector.unregister(fd)
        posix.close(fd)

    def reap(self):
        try:
            while posix.read(self.wake_read, 4096):
                pass
        except BlockingIOError:
            pass
        while self.by_pid:
            try:
                # Without reaping first, so the job's pid (its group id) cannot be reused while
                # we kill what it left behind in its group.
                info = posix.waitid(posix.P_ALL, 0,
                                    posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            _signal_group(pid, signal.SIGKILL)
            _, raw = posix.waitpid(pid, 0)
            job = self.by_pid.pop(pid, None)
            if job is None:
                continue
            signalled = posix.WIFSIGNALED(raw)
            job.status = -posix.WTERMSIG(raw) if signalled else posix.WEXITSTATUS(raw)
            job.exited_at = time.monotonic()
            self.finish_if_done(job)

    def finish_if_done(self, job):
        if job.status is None:
            return
        if job.pipes:
            if time.monotonic() < job.exited_at + _PIPE_LINGER:
                return
            for fd in list(job.pipes):
                self.close_pipe(job, fd)
        del self.jobs[job.number]
        if not job.abandoned:
            self.record_status(job)
        self.send(b"X", job.number, str(job.status).encode("ascii"))

    def run_timers(self):
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.kill_at is not None and job.kill_at <= now:
                job.kill_at = None
                if job.status is None:
                    _signal_group(job.pid, signal.SIGKILL)
            if job.status is not None:
                self.finish_if_done(job)

    def timeout(self):
        moments = [job.kill_at for job in self.jobs.values() if job.kill_at is not None]
        moments += [job.exited_at + _PIPE_LINGER for job in self.jobs.values()
                    if job.exited_at is not None]
        if self.silence_limit and not self.quitting:
            moments.append(self.heard + self.silence_limit + 0.01)
        if self.ping_interval and not self.outbox:
            moments.append(self.ping_due_at())
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    # -- the statuses' file ----------------------------------------------------------------
    def open_statuses(self):
        """A new file for the statuses (never one someone else made), or None (said)."""
        try:
            flags = (posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_APPEND
                     | posix.O_NOFOLLOW | posix.O_CLOEXEC)
            return self.status_file and posix.open(self.status_file, flags, 0o600)
        except OSError as exc:
            self.status_file = None  # not ours: never removed
            posix.write(2, ("lofarexec host agent: cannot keep the jobs' statuses (%s); they "
                            "travel the link only\n" % exc).encode())
            return None

    def record_status(self, job):
        try:  # one short write with O_APPEND: a reader sees whole lines
            if self.statuses is not None:
                posix.write(self.statuses, b"%d %d\n" % (job.number, job.status))
        except OSError as exc:  # a full disk? Said once; later statuses travel the link only
            posix.write(2, ("lofarexec host agent: cannot record jobs' statuses any more "
                            "(%s)\n" % exc).encode())
            posix.close(self.statuses)
            self.statuses = None

    def close_statuses(self):
        """Remove the file after a clean end (every status was heard), else leave it."""
        if self.statuses is not None:
            posix.close(self.statuses)
        try:
            if self.status_file and self.clean_end:
                posix.unlink(self.status_file)
        except FileNotFoundError:  # read and removed already
            pass

    # -- output ----------------------------------------------------------------------------
    def ping_due_at(self):
        """When to ping the control node: a ping interval after the last frame; never while
        frames wait to be sent (the link is full or stalled: a ping would not get through)."""
        return float("inf") if self.outbox else self.said + self.ping_interval

    def send(self, kind, number, payload):
        """Queue a frame; the loop writes every frame of a turn at once."""
        self.said = time.monotonic()
        self.outbox += _HEADER.pack(kind, number, len(payload))
        self.outbox += payload

    def flush(self):
        try:
            while self.outbox:
                written = posix.write(1, self.outbox[:_CHUNK * 4])
                del self.outbox[:written]
        except BlockingIOError:
            pass
        except OSError:  # the channel is gone: nobody is left to read what we would say
            self.outbox.clear()
            self.stop()

    def last_words(self):
        """Send what is still waiting (the last jobs' ends), for a few seconds at most."""
        deadline = time.monotonic() + _PIPE_LINGER
        writable = select.poll()
        writable.register(1, _WRITE)
        self.flush()
        while self.outbox and time.monotonic() < deadline:
            writable.poll(int(max(0.0, deadline - time.monotonic()) * 1000 + 0.999))
            self.flush()

    def flow(self):
        """Watch stdout while there is something to send; stop reading the jobs' pipes while
        too much is waiting (back-pressure on the jobs, never on the requests)."""
        watching = 1 in self.selector.data
        if self.outbox and not watching:
            self.selector.register(1, _WRITE, "stdout")
        elif not self.outbox and watching:
            self.selector.unregister(1)
        reading = len(self.outbox) < _OUTBOX_LIMIT
        if reading != self.reading_pipes:
            self.reading_pipes = reading
            for job in self.jobs.values():
                for fd in job.pipes:
                    if reading:
                        self.selector.register(fd, _READ, job)
                    else:
                        self.selector.unregister(fd)


def _signal_group(pgid, signum):
    try:
        posix.killpg(pgid, signum)
    except OSError:
        pass


def main():
    if sys.version_info < (3, 8):  # posix_spawn with setsid and setsigdef
        sys.exit("lofarexec host agent: needs Python 3.8 or later, %s is %s; set remote_python"
                 % (sys.executable, sys.version.split()[0]))
    Agent(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0,
          sys.argv[2] if len(sys.argv) > 2 else "").run()


if __name__ == "__main__":
    main()
    posix._exit(0)
