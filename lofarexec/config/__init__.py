"""``pipeline.cfg``: where it is found, how it is read, typed access, and host lists.

The names recipes and the runner use are re-exported here.
"""

from __future__ import annotations

from lofarexec.config.pipeline import PipelineConfig, find_config, load_config

__all__ = ["PipelineConfig", "find_config", "load_config"]
