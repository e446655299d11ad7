"""lofarexec's pytest plugin, enabled the way a plugin author does: one ``-p`` option."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lofarexec.testing import pytest_plugin

AUTHOR_TESTS = '''\
import pytest
from lofarexec import ComputeJob
from lofarexec.testing.pytest_plugin import BackendContract, ContractSetup

class TestLocalContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path):
        return ContractSetup(method="local", hosts=["a", "b", "c", "d"], directory=tmp_path,
                             python={python!r})

@pytest.fixture
def lofarexec_method():
    return "mock"

def test_run_fixture_uses_the_chosen_backend(lofarexec_run):
    lofarexec_run.config = "[mock]\\nreturncode = 3\\n"
    job = ComputeJob("h1", "anything")
    assert lofarexec_run([job]).is_set()
    assert job.results["returncode"] == 3
'''


def test_one_option_enables_fixtures_and_the_contract_suite(tmp_path: Path):
    (tmp_path / "test_author.py").write_text(AUTHOR_TESTS.format(python=sys.executable))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "-p", "lofarexec.testing.pytest_plugin", "-k", "run_fixture or argv_round_trip"],
        cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout


def test_the_ssh_bed_skips_saying_why_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)  # past the root check, to the missing sshd
    monkeypatch.setattr("lofarexec.testing.sshbed.SSHD", Path("/no/such/sshd"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no /usr/sbin/sshd: install openssh"):
        pytest_plugin.require_sshd()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        pytest_plugin.require_sshd()


def test_importing_lofarexec_testing_stays_cheap():
    code = textwrap.dedent("""\
        import sys, lofarexec.testing
        assert "lofarexec.run.runner" not in sys.modules
        assert lofarexec.testing.BackendContract.__name__ == "BackendContract"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
