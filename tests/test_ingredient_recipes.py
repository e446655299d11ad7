"""A recipe in the LOFAR trunk's shape (declared ingredients) run as a program.

Inputs become options with defaults and type conversion, are looked up in the recipe's own
``pipeline.cfg`` section, and every mistake (unknown option, bad value, missing input, bad config
line) is one line and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import REPO, write_config

MASTER = """\
import sys

import lofarpipe.support.lofaringredient as ingredient
from lofarpipe.support.baserecipe import BaseRecipe
from lofarpipe.support.remotecommand import ComputeJob, RemoteCommandRecipeMixIn


class shape(BaseRecipe, RemoteCommandRecipeMixIn):
    inputs = {
        'label': ingredient.StringField('--label', help="what the node is told"),
        'host': ingredient.StringField('--host', default='localhost'),
        'count': ingredient.IntField('-k', '--count', default=2, help="how many"),
        'scale': ingredient.FloatField('--scale', default=1.5),
        'flag': ingredient.BoolField('--flag', default=False),
        'names': ingredient.ListField('--names', default=[]),
        'workdir': ingredient.DirectoryField('--workdir', optional=True),
        'bad_output': ingredient.BoolField('--bad-output', default=False),
    }
    outputs = {
        'summary': ingredient.StringField(help="what ran"),
        'runtime': ingredient.StringField(help="from pipeline.cfg's [DEFAULT]"),
        'never': ingredient.StringField(help="never set: warned of"),
    }

    def go(self):
        super(shape, self).go()
        node = "%s %s" % (sys.executable, self.__file__.replace("master", "nodes"))
        job = ComputeJob(self.inputs['host'], node, arguments=[self.inputs['label']])
        self._schedule_jobs([job])
        self.outputs['summary'] = repr([self.inputs[key] for key in
                                        ('label', 'count', 'scale', 'flag', 'names')])
        self.outputs['runtime'] = self.inputs['runtime_directory']
        if self.inputs['bad_output']:
            self.outputs['summary'] = 42
        return 1 if self.error.isSet() else 0


if __name__ == '__main__':
    sys.exit(shape().main())
"""

NODE = """\
import sys
from lofarpipe.support.lofarnode import LOFARnode

class shape(LOFARnode):
    def run(self, label):
        self.logger.info("node told %s", label)
        return 0

if __name__ == "__main__":
    sys.exit(shape(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    for folder, text in (("master", MASTER), ("nodes", NODE)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "shape.py").write_text(text)
    return tmp_path / "master" / "shape.py"


def run(recipe: Path, *args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(recipe), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=recipe.parent.parent)


def one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one stderr line holding all ``words``; no traceback around it."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if all(w in line for w in words)]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_options_config_section_and_defaults_reach_the_recipe_and_its_job(recipe, tmp_path):
    config = write_config(tmp_path, """\
        [shape]
        label = from-config
        count = 5
        scale = 0.25
        """)
    result = run(recipe, "-j", "J", "-c", config, "--count", "7", "--flag", "--names", "a,b",
                 "-v")
    assert result.returncode == 0, result.stderr
    # the command line wins over [shape], which wins over the field's default
    assert "summary = ['from-config', 7, 0.25, True, ['a', 'b']]" in result.stdout
    assert f"runtime = {tmp_path}/runtime" in result.stdout
    assert "node told from-config" in result.stderr
    assert "did not set its output(s) never" in result.stderr


@pytest.mark.slow
def test_an_ingredient_recipe_runs_its_job_over_ssh(recipe, tmp_path, ssh_testbed):
    config = write_config(tmp_path, f"""\
        [remote]
        method = ssh
        [ssh]
        config_file = {ssh_testbed.ssh_config}
        [logging]
        bind_address = 127.0.0.1
        advertise_address = 127.0.0.1
        [shape]
        host = node2
        """)
    result = run(recipe, "-j", "J", "-c", config, "--label", "over-ssh", "-v")
    assert result.returncode == 0, result.stderr
    assert "node.node2.shape: node told over-ssh" in result.stderr


def test_help_lists_the_inputs_with_their_defaults(recipe):
    result = run(recipe, "--help")
    assert result.returncode == 0
    for text in ("--label", "--count", "[Default: 2]", "--workdir", "[Optional]", "--job-name",
                 "outputs: never, runtime, summary"):
        assert text in result.stdout


@pytest.mark.parametrize("args, words", [
    (["--nosuch", "1"], ["--nosuch", "--help"]),
    (["--count", "many"], ["--count", "an integer"]),
    (["--flag", "maybe"], ["--flag", "True or False"]),
])
def test_a_command_line_mistake_is_one_line_and_status_2(recipe, tmp_path, args, words):
    result = run(recipe, "-j", "J", "-c", write_config(tmp_path), "--label", "x", *args)
    assert result.returncode == 2
    one_error_line(result, *words)
    assert result.stdout == ""


def test_a_missing_required_input_is_one_line_before_any_job(recipe, tmp_path):
    result = run(recipe, "-j", "J", "-c", write_config(tmp_path))
    assert result.returncode == 1
    line = one_error_line(result, "--label")
    assert "[shape]" in line and "required input" in line
    assert "node told" not in result.stderr


@pytest.mark.parametrize("text, words", [
    ("count = many", ["[shape]", "'count'", "an integer"]),
    ("colour = red", ["[shape]", "'colour'", "no input"]),
])
def test_a_bad_config_line_is_one_line_naming_file_section_key(recipe, tmp_path, text, words):
    config = write_config(tmp_path, f"[shape]\nlabel = x\n{text}\n")
    result = run(recipe, "-j", "J", "-c", config)
    assert result.returncode == 1
    assert str(config) in one_error_line(result, *words)


@pytest.mark.slow
def test_a_bad_output_value_is_one_line_and_status_1(recipe, tmp_path):
    result = run(recipe, "-j", "J", "-c", write_config(tmp_path), "--label", "x",
                 "--bad-output", "True")
    assert result.returncode == 1
    one_error_line(result, "42", "'summary'")


def test_an_unknown_section_is_still_refused_for_other_names(recipe, tmp_path):
    config = write_config(tmp_path, textwrap.dedent("""\
        [shapes]
        label = x
        """))
    result = run(recipe, "-j", "J", "-c", config, "--label", "x")
    assert result.returncode == 1
    one_error_line(result, "[shapes]")


def test_an_input_taking_a_framework_option_is_one_line(tmp_path):
    recipe = tmp_path / "master" / "clash.py"
    recipe.parent.mkdir()
    recipe.write_text(textwrap.dedent("""\
        import sys
        from lofarpipe.support import lofaringredient as ingredient
        from lofarpipe.support.baserecipe import BaseRecipe

        class clash(BaseRecipe):
            inputs = {'rerun': ingredient.BoolField('-r', '--rerun', default=False)}

        if __name__ == '__main__':
            sys.exit(clash().main())
        """))
    result = run(recipe, "-j", "J")
    assert result.returncode == 2
    assert "-r" in one_error_line(result, "'rerun'", "other option strings")
