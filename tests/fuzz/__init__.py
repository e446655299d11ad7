"""Fuzz tests (issue 12, item 10): every parser of user or network input, over generated input.

Each input either reads as an independent reference reading says, or raises one of lofarexec's
own errors naming the file (and line, where there is one): never another exception. Every test
uses :data:`FUZZ`: a fixed number of examples, derandomised, no example database, so a run
takes seconds and never differs from the last one.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

#: The settings of every fuzz test: deterministic, a few hundred examples, no deadline.
FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
