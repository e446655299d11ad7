"""Fixtures shared by the backend tests in this folder (defined in their helper modules)."""

from tests.backends.paramiko_helpers import (  # noqa: F401 - fixtures, found by name
    backends,
    either_mode,
    open_backends,
    pid_catcher,
)
