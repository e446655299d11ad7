"""``pipeline.cfg``: where it is found, how it is read, typed access, and host lists.

``files`` finds and parses the file, ``values`` turns a value's text into a typed value,
``pipeline`` gives typed access (:class:`PipelineConfig`, :func:`load_config`), ``settings``
fills a backend's settings dataclass from its section, ``hostlist`` reads host lists. The names
recipes and the runner use are re-exported here.
"""

from __future__ import annotations

from lofarexec.config.files import find_config
from lofarexec.config.pipeline import PipelineConfig, load_config

__all__ = ["PipelineConfig", "find_config", "load_config"]
