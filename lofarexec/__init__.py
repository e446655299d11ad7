"""lofarexec: pipeline-native task distribution.

The public surface for recipe writers and plugin authors. Names are imported lazily so that a
compute node can ``import lofarexec.node`` with nothing but the standard library installed.
"""

from __future__ import annotations

from lofarexec import _moved
from lofarexec._lazy import lazy_attributes

__version__ = "0.1.0"

_moved.install()  # old module paths stay importable for one release, with a warning

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AuthenticationError": "lofarexec.errors",
    "Backend": "lofarexec.backend",
    "BackendError": "lofarexec.errors",
    "BackendRegistry": "lofarexec.backend",
    "BaseRecipe": "lofarexec.recipe",
    "ComputeJob": "lofarexec.job",
    "ConfigError": "lofarexec.errors",
    "ConnectError": "lofarexec.errors",
    "DataMapError": "lofarexec.errors",
    "ExecEnvironment": "lofarexec.transport.execenv",
    "HostKeyError": "lofarexec.errors",
    "JobFailed": "lofarexec.errors",
    "JobExchange": "lofarexec.channel.exchange",
    "JobHandle": "lofarexec.backend",
    "JobListError": "lofarexec.errors",
    "JobResult": "lofarexec.job",
    "JobState": "lofarexec.job",
    "JobTimeout": "lofarexec.errors",
    "DataMap": "lofarexec.mapfiles.datamaps",
    "LOFARnode": "lofarexec.node",
    "LOFARnodeTCP": "lofarexec.node",
    "MultiDataMap": "lofarexec.mapfiles.datamaps",
    "LaunchPreview": "lofarexec.backend",
    "LaunchRequest": "lofarexec.backend",
    "LofarexecError": "lofarexec.errors",
    "NothingToKill": "lofarexec.backend",
    "Outcome": "lofarexec.backend",
    "PipelineQuit": "lofarexec.errors",
    "PluginError": "lofarexec.errors",
    "ProcessLauncher": "lofarexec.transport.process",
    "ProtocolError": "lofarexec.errors",
    "RemoteCommandRecipeMixIn": "lofarexec.recipe",
    "RemoteLaunch": "lofarexec.transport.wrapper",
    "RunContext": "lofarexec.context",
    "Report": "lofarexec.backend",
    "WaitTimeout": "lofarexec.errors",
    "remote_launch": "lofarexec.transport.wrapper",
    "hookimpl": "lofarexec.plugin.spec",
    "load_data_map": "lofarexec.mapfiles.parset",
    "store_data_map": "lofarexec.mapfiles.parset",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
