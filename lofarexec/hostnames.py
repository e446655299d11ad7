"""The one check of what may name a host, for every place that takes a host name.

A host name goes into mapfiles, host lists, job results and launchers' command lines (``ssh
HOST``, ``mpirun --host HOST``, ``srun -w HOST``, a ``cmdline`` template), so one rule says
what may be one: letters, digits and ``_ . : @ % -`` (DNS names, IPv4 and IPv6 addresses with
a zone, ssh config aliases, ``user@host``), not starting with ``-``, which every launcher would
read as an option (``-oProxyCommand=...``). A transport that gives more characters a meaning
of its own refuses those too (``also_refused``: Open MPI reads ``node:4`` as four slots).

A leaf module (it imports nothing of lofarexec), so that :mod:`lofarexec.job` can use it;
backends reach it as :func:`lofarexec.transport.host_name_problem`.
"""

from __future__ import annotations

import re

__all__ = ["host_name_problem", "is_host_name"]

_HOST_NAME = re.compile(r"[A-Za-z0-9_.:@%][A-Za-z0-9_.:@%-]*")


def host_name_problem(host: object, *, also_refused: str = "") -> str | None:
    """Why ``host`` cannot name a host (one line, starting with ``repr(host)``), or None."""
    if not isinstance(host, str):
        return f"{host!r} is not a host name: it is a {type(host).__name__}, not a string"
    if host.startswith("-"):
        return f"{host!r} is not a host name: a leading '-' would be read as an option"
    if not _HOST_NAME.fullmatch(host):
        return (f"{host!r} is not a host name: only letters, digits and '_.:@%-' may be in "
                "one")
    refused = sorted(set(also_refused) & set(host))
    if refused:
        return f"{host!r} is not a host name here: {''.join(refused)!r} has a meaning of its own"
    return None


def is_host_name(host: object, *, also_refused: str = "") -> bool:
    """Whether ``host`` can name a host (see :func:`host_name_problem`)."""
    return host_name_problem(host, also_refused=also_refused) is None
