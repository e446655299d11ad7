"""The node's environment a run builds from pipeline.cfg and this process's environment."""

from __future__ import annotations

from lofarexec.run.runner import node_environment


def test_environment_prepends_engine_paths_and_drops_unset(make_config, node_script, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/original/path")
    monkeypatch.delenv("LOFARROOT", raising=False)
    monkeypatch.setenv("MY_SETTING", "forwarded")
    config = make_config("[deploy]\nengine_ppath = /engine/a:/engine/b\nengine_lpath = /lib/x\n"
                         "[remote]\nmethod = local\n"
                         "forward_environment = MY_SETTING, NOT_SET_ANYWHERE\n")
    environment = node_environment(config)
    assert environment["PYTHONPATH"].split(":")[:3] == ["/engine/a", "/engine/b", "/original/path"]
    assert environment["LD_LIBRARY_PATH"].split(":")[0] == "/lib/x"
    assert environment["MY_SETTING"] == "forwarded"
    assert "LOFARROOT" not in environment and "NOT_SET_ANYWHERE" not in environment
    assert "None" not in environment.values()
