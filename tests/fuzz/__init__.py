"""Fuzz tests (issue 12, item 10): every parser of user or network input, over generated input.

Each input either reads as an independent reference reading says, or raises one of lofarexec's
own errors naming the file (and line, where there is one): never another exception. Every test
uses :data:`FUZZ`: a fixed number of examples, derandomised, no example database, so the folder
takes seconds. Each test states an invariant that must hold for every input, so a failure is
always a real input that breaks it (hypothesis prints it), never chance. Note that hypothesis
also draws constants found in the loaded modules' source, so which examples run can change with
what else the session imported; set ``LOFAREXEC_FUZZ_EXAMPLES`` (e.g. 5000) for a deeper run,
randomised too, when changing a parser.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_DEEP = int(os.environ.get("LOFAREXEC_FUZZ_EXAMPLES", "0"))

#: The settings of every fuzz test: deterministic, a few hundred examples, no deadline.
FUZZ = settings(max_examples=_DEEP or 200, deadline=None, derandomize=not _DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
