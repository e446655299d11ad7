"""Programs sent to compute hosts, read as text and run there by the host's own Python.

Standard library only, for any Python >= 3.8 on the host. The control side never imports them
(an import-linter contract says so): :func:`lofarexec.transport.inline_program` reads their
source and sends it inline as ``python3 -I -S -c``.
"""
