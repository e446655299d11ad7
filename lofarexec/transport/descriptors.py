"""What a job is told when the control node has no file descriptor left for it."""

from __future__ import annotations

import errno
import resource


def out_of_descriptors(exc: BaseException) -> str | None:
    """The reason for a job that failed because this process (EMFILE) or the system (ENFILE)
    ran out of file descriptors, saying what to do; None for any other error. A backend uses
    it where it opens sockets, pipes or processes, so that the job's reason is not whatever
    failed next (such as a user lookup that could not open ``/etc/passwd``)."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.EMFILE, errno.ENFILE):
        return None
    if exc.errno == errno.ENFILE:
        return ("the control node's system ran out of file descriptors (ENFILE): raise "
                "fs.file-max, or lower [remote] max_per_node")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (f"the control node ran out of file descriptors (open files limit {soft}): raise "
            "the limit (ulimit -n), or lower [remote] max_per_node")
