"""The paramiko backend's known_hosts lookups: the same answers as paramiko's own
``HostKeys.lookup``, at one HMAC per hashed line and one lookup per host name (issue 17: a
1,000-line hashed file cost each host ~35 ms of the control process's CPU)."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
from lofarexec_paramiko import hosts
from lofarexec_paramiko.hosts import KnownHosts, Target


@pytest.fixture(scope="module")
def keys() -> list[paramiko.PKey]:
    """Three keys, the second of another type."""
    return [paramiko.ECDSAKey.generate(bits=bits) for bits in (256, 384, 256)]


def line(names: str, key: paramiko.PKey) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}\n"


def target(name: str, *paths: Path) -> Target:
    return Target(name=name, hostname=name, port=22, user="u", key_files=(),
                  keys_required=False, use_agent=False,
                  user_known_hosts=tuple(str(path) for path in paths), global_known_hosts=())


def test_lookups_equal_paramiko_s(tmp_path: Path, keys) -> None:
    hashed = paramiko.HostKeys.hash_host
    path = tmp_path / "known_hosts"
    path.write_text("".join([
        line("plain.example,10.0.0.1", keys[0]),
        line(hashed("hashed.example"), keys[1]),
        line(hashed("other.example"), keys[2]),
        line(f"{hashed('both.example')},both.example", keys[0]),
        line("plain.example", keys[2]),  # a second key of the same type: the first one counts
        line("plain.example", keys[1]),
        "|1|garbled not-a-key-line\n",
    ]))
    host_keys = paramiko.HostKeys(str(path))
    for name in ("plain.example", "10.0.0.1", "hashed.example", "other.example",
                 "both.example", "missing.example"):
        theirs = host_keys.lookup(name)
        expected = [] if theirs is None else list(dict.fromkeys(
            (kind, theirs[kind]) for kind in theirs))
        assert KnownHosts("reject")._recorded(target(name, path)) == expected, name


def test_each_host_is_looked_up_once(tmp_path: Path, keys, monkeypatch) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(line(paramiko.HostKeys.hash_host("h1"), keys[0]))
    lookups: list[str] = []
    lookup = hosts._Index.lookup
    monkeypatch.setattr(hosts._Index, "lookup",
                        lambda self, name: lookups.append(name) or lookup(self, name))
    known = KnownHosts("reject")
    assert known.key_types(target("h1", path)) == [keys[0].get_name()]
    known.check(target("h1", path), keys[0])  # no error: on record
    assert lookups == ["h1"]
