"""The remote half of every shell-hop transport: start the node, watch the link, report truly.

Sent inline (``python3 -c ...``) by transports that reach a host through a remote shell (ssh,
paramiko, the ``cmdline`` template) or a launcher (``mpirun``, ``srun``), so nothing but a
Python 3 interpreter is needed on the host. Standard library only; it must run on any Python
>= 3.8 a compute node may have.

It exists because a remote shell alone cannot give three guarantees:

* **Kill reaches the host.** Killing the local ``ssh`` client (or closing a paramiko channel)
  leaves a remote command without a tty running. The wrapper keeps reading its stdin (the
  channel); end-of-file, SIGHUP or SIGTERM means the control node gave up on the job, and the
  wrapper kills the job's whole process group: TERM, then KILL after the grace period.
* **Secrets stay off command lines.** The job's environment and token arrive as the first line
  of stdin (ASCII words: the status marker, the kill grace, then ``NAME=<base64 of the value>``
  for each variable), not as ``env VAR=...`` words that ``ps`` on the host would show.
* **The exit status is the node's, exactly.** The wrapper writes ``<marker> <status>`` as the
  last line of stderr (a negative status: killed by that signal; ``start-failed`` when the node
  program could not be started at all). ``ssh`` exiting 255 without that line is a transport
  failure; a node exiting 255 is reported as 255. The marker is a per-job random string sent on
  stdin, so the node cannot forge it.

The job's stdout and stderr are the wrapper's own (passed through, never copied), and whatever
the job leaves in its process group when it exits is killed.
"""

import _thread
import binascii
import os
import signal
import sys
import time

# Start-up cost is paid by every job, so only cheap built-in modules are imported (json alone
# would add ~7 ms here, subprocess ~10 ms).


def _kill_group(pgid, grace):
    """TERM the job's process group; KILL it if anything is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        return
    time.sleep(grace)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _watch_stdin(pgid, grace):
    """Block on stdin; its end means the control node is gone: kill the job."""
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    _kill_group(pgid, grace)


def _read_header():
    """The first stdin line: ``MARKER GRACE NAME=BASE64 ...`` (no more is sent before EOF)."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 65536)
        if not chunk:
            raise SystemExit("lofarexec wrapper: no launch header on stdin")
        line += chunk
    words = line.decode("ascii").split()
    environment = dict(os.environ)
    for word in words[2:]:
        name, _, value = word.partition("=")
        environment[name] = binascii.a2b_base64(value).decode("utf-8", "surrogateescape")
    return words[0], float(words[1]), environment


def _report(marker, status):
    os.write(2, ("\n%s %d\n" % (marker, status)).encode("ascii"))


def main():
    marker, grace, environment = _read_header()
    argv = sys.argv[1:]
    # posix_spawnp searches the caller's PATH, not the job's: make them the same.
    os.environ["PATH"] = environment.get("PATH", os.defpath)
    try:
        # Python ignores SIGPIPE and SIGXFSZ; the job gets the defaults, as from a shell.
        pid = os.posix_spawnp(argv[0], argv, environment, setsid=True,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ), file_actions=[
                                  (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])
    except OSError as exc:
        os.write(2, ("cannot start %r: %s\n" % (argv[0], exc.strerror or exc)).encode())
        os.write(2, ("\n%s start-failed\n" % marker).encode("ascii"))
        return
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: _kill_group(pid, grace))
    _thread.start_new_thread(_watch_stdin, (pid, grace))
    # Wait without reaping, so the job's pid (its group id) cannot be reused while we kill what
    # it left behind in its group; then reap it.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    _, raw = os.waitpid(pid, 0)
    _report(marker, -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw))


if __name__ == "__main__":
    main()
    os._exit(0)
