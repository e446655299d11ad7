"""Mapfiles: which host holds which file.

:mod:`~lofarexec.mapfiles.parset` reads and writes the seed's ``host = [file, ...]`` parsets;
:mod:`~lofarexec.mapfiles.datamaps` holds the later framework's ``DataMap`` and
``MultiDataMap`` (JSON, with ``skip`` flags).
"""
