"""The documentation keeps up with the code: hooks, configuration keys, backend settings, toctrees.

Fast checks on the reStructuredText sources in ``docs/``; Sphinx is not needed. Build the
pages themselves with ``python -m sphinx -W -b html docs docs/_build/html``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from lofarexec.config import PipelineConfig
from lofarexec.config import pipeline as config_module
from lofarexec.plugin import spec
from lofarexec.plugin.manager import build_plugin_manager

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PACKAGE = REPO / "lofarexec"

#: Every ``pipeline.cfg`` key lofarexec reads, as (section, key). A key added to the code must be
#: added here and documented under its section's heading in docs/configuration.rst.
CONFIG_KEYS = {
    ("DEFAULT", "runtime_directory"),
    ("DEFAULT", "working_directory"),
    ("DEFAULT", "recipe_directories"),
    ("layout", "job_directory"),
    ("cluster", "hosts"),
    ("deploy", "engine_ppath"),
    ("deploy", "engine_lpath"),
    ("remote", "method"),
    ("remote", "max_per_node"),
    ("remote", "max_jobs"),
    ("remote", "job_timeout"),
    ("remote", "idle_timeout"),
    ("remote", "forward_environment"),
    ("remote", "node_arguments"),
    ("remote", "retries"),
    ("remote", "retry_exit_codes"),
    ("remote", "host_failures"),
    ("remote", "host_down_after"),
    ("remote", "halt"),
    ("remote", "audit"),
    ("logging", "log_file"),
    ("logging", "bind_address"),
    ("logging", "advertise_address"),
    ("logging", "max_message_mib"),
    ("logging", "max_kept_mib"),
    ("logging", "progress_interval"),
    ("logging", "format"),
    ("logging", "datefmt"),
}
#: Sections whose keys are data (host names), not fixed names.
CONFIG_SECTIONS_OF_DATA = {"max_per_node"}
#: The built-in backends, each with a page docs/backends/<name>.rst.
BUILT_IN_BACKENDS = {"local", "ssh", "mock"}

# config.get("section", "key", ...), self.get_int(DEFAULT_SECTION, "key", ...), self._typed(...)
_KEY_READ = re.compile(
    r"\b(?:self|config|self\.config)\s*\.\s*(?:get|get_int|get_float|get_bool|get_list|get_path"
    r"|_typed)\(\s*(DEFAULT_SECTION|\"[^\"]*\")\s*,\s*\"([^\"]+)\""
)
_SECTION_READ = re.compile(r"\bsection_keys\(\s*\"([^\"]+)\"\s*\)")
_ADORNMENT = re.compile(r"([=\-~^\"'`#*+:.<>_])\1+\s*\Z")


# --------------------------------------------------------------------------- reST helpers


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _headings(text: str) -> list[tuple[int, str]]:
    """(line index, title) of every section title, ``literal`` markup removed."""
    lines = text.splitlines()
    found = []
    for index in range(1, len(lines)):
        title, underline = lines[index - 1].rstrip(), lines[index].rstrip()
        if (title.strip() and not title[0].isspace() and not _ADORNMENT.match(title)
                and _ADORNMENT.match(underline) and len(underline) >= len(title)):
            found.append((index - 1, title.replace("``", "").strip()))
    return found


def _sections(text: str) -> dict[str, str]:
    """Title -> the text from that title to the next title of any level."""
    lines = text.splitlines()
    heads = _headings(text)
    bounds = [line for line, _ in heads[1:]] + [len(lines)]
    return {title: "\n".join(lines[line:end]) for (line, title), end in zip(heads, bounds)}


def _toctree_entries(path: Path) -> set[str]:
    """Docnames (relative to docs/, no suffix) listed in the toctrees of ``path``."""
    entries = set()
    lines = _read(path).splitlines()
    base = path.parent.relative_to(DOCS)
    for index, line in enumerate(lines):
        if line.strip() != ".. toctree::":
            continue
        for entry in lines[index + 1:]:
            if entry.strip() and not entry[0].isspace():
                break  # the directive's indented block has ended
            entry = entry.strip()
            if not entry or entry.startswith(":"):
                continue
            target = re.search(r"<([^>]+)>\Z", entry)
            name = target.group(1) if target else entry
            docname = name[1:] if name.startswith("/") else (base / name).as_posix()
            entries.add(str(Path(docname)))
    return entries


def _rst_files() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.relative_to(DOCS).parts)


def _docname(path: Path) -> str:
    return path.relative_to(DOCS).with_suffix("").as_posix()


# --------------------------------------------------------------------------- the project


def test_sphinx_project_exists():
    conf = _read(DOCS / "conf.py")
    extensions = re.search(r"^extensions\s*=\s*\[([^\]]*)\]", conf, re.M)
    assert extensions is not None, "docs/conf.py must set extensions"
    named = set(re.findall(r"[\"']([\w.]+)[\"']", extensions.group(1)))
    assert named <= {"sphinx.ext.autodoc", "sphinx.ext.viewcode"}
    assert (DOCS / "index.rst").is_file()


def test_every_page_is_in_a_toctree():
    listed = set().union(*(_toctree_entries(path) for path in _rst_files()))
    pages = {_docname(path) for path in _rst_files()}
    assert pages - listed - {"index"} == set(), "add these pages to a toctree"
    assert listed - pages == set(), "these toctree entries name no page"


# --------------------------------------------------------------------------- hooks


def _hook_names() -> set[str]:
    return {name for name, value in vars(spec).items()
            if name.startswith("lofarexec_") and callable(value)}


def test_hooks_are_found():
    assert {"lofarexec_register_backends", "lofarexec_job_finished"} <= _hook_names()


def test_every_hook_has_a_heading_in_the_plugin_guide():
    sections = _sections(_read(DOCS / "plugins.rst"))
    documented = {re.match(r"lofarexec_\w+", title).group(0)
                  for title in sections if re.match(r"lofarexec_\w+", title)}
    assert _hook_names() - documented == set(), "give each hook a section in docs/plugins.rst"
    assert documented - _hook_names() == set(), "docs/plugins.rst documents hooks that are gone"


@pytest.mark.parametrize("hook", sorted(_hook_names()))
def test_every_hook_section_says_since_when(hook):
    sections = _sections(_read(DOCS / "plugins.rst"))
    body = next(text for title, text in sections.items() if title.startswith(hook))
    assert ".. versionadded::" in body, f"the section of {hook} needs a versionadded line"


# --------------------------------------------------------------------------- pipeline.cfg


def _keys_read_by_code() -> tuple[set[tuple[str, str]], set[str]]:
    """(section, key) pairs read with literal names, and whole sections read, in lofarexec/."""
    keys: set[tuple[str, str]] = set()
    sections: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _read(path)
        for section, key in _KEY_READ.findall(source):
            keys.add(("DEFAULT" if section == "DEFAULT_SECTION" else section.strip('"'), key))
        sections.update(_SECTION_READ.findall(source))
    return keys, sections


def _interpolation_names() -> set[str]:
    source = inspect.getsource(config_module.load_config)
    extras = re.search(r"extras = \{(.*?)\n    \}", source, re.S)
    assert extras is not None, "load_config no longer builds 'extras': update this test"
    return set(re.findall(r"\"(\w+)\":", extras.group(1)))


def test_every_config_property_reads_a_key_this_test_can_see():
    """Guards the regex: a property reading keys in a way it misses must fail here."""
    for name, member in vars(PipelineConfig).items():
        if isinstance(member, property):
            source = inspect.getsource(member.fget)
            assert _KEY_READ.search(source) or _SECTION_READ.search(source), (
                f"PipelineConfig.{name} reads no key this test recognises; extend _KEY_READ"
            )


def test_the_key_list_matches_the_code():
    keys, sections = _keys_read_by_code()
    keys -= {("DEFAULT", name) for name in _interpolation_names()}
    assert keys - CONFIG_KEYS == set(), "new keys: add them to CONFIG_KEYS and document them"
    assert CONFIG_KEYS - keys == set(), "keys no longer read: remove them from CONFIG_KEYS"
    assert sections == CONFIG_SECTIONS_OF_DATA


@pytest.mark.parametrize(("section", "key"), sorted(CONFIG_KEYS))
def test_every_config_key_is_documented_under_its_section(section, key):
    sections = _sections(_read(DOCS / "configuration.rst"))
    body = sections.get(f"[{section}]")
    assert body is not None, f"docs/configuration.rst needs a heading ``[{section}]``"
    assert f"``{key}``" in body, f"document ``{key}`` under [{section}] in configuration.rst"


@pytest.mark.parametrize("section", sorted(CONFIG_SECTIONS_OF_DATA))
def test_every_data_section_is_documented(section):
    assert f"[{section}]" in _sections(_read(DOCS / "configuration.rst"))


def test_every_interpolation_name_is_documented():
    names = _interpolation_names()
    assert names == {"job_name", "start_time", "cwd", "config_directory"}
    text = _read(DOCS / "configuration.rst")
    assert {name for name in names if f"``{name}``" not in text} == set()


# --------------------------------------------------------------------------- backends


def _built_in_backends() -> dict[str, type]:
    registry = build_plugin_manager().backends
    return {name: registry.get(name) for name in registry.names()
            if registry.provider(name).split()[0] == "lofarexec"}


def test_the_built_in_backends_are_installed():
    assert BUILT_IN_BACKENDS <= set(_built_in_backends()), "pip install -e . registers them"


def test_every_built_in_backend_has_a_page_listing_each_setting():
    for name, backend in _built_in_backends().items():
        page = DOCS / "backends" / f"{name}.rst"
        assert page.is_file(), f"backend '{name}' needs docs/backends/{name}.rst"
        text = _read(page)
        fields = [field.name for field in dataclasses.fields(backend.Settings) if field.init]
        missing = [field for field in fields if f"``{field}``" not in text]
        assert missing == [], f"docs/backends/{name}.rst does not document {missing}"


# --------------------------------------------------------------------------- the public surface
_AUTODOC = re.compile(r"^\.\. auto(?:class|function|data|exception)::\s+(\S+)\s*$", re.MULTILINE)


def _documented(prefix: str) -> set[str]:
    text = (DOCS / "api.rst").read_text()
    names = set()
    for target in _AUTODOC.findall(text):
        owner, _, name = target.rpartition(".")
        if owner == prefix:
            names.add(name)
    return names


@pytest.mark.parametrize("module_name", ["lofarexec", "lofarexec.transport"])
def test_api_page_documents_exactly_the_public_names(module_name):
    """docs/api.rst documents every name of the package's ``__all__`` under the package's own
    path, and nothing else there: a name added to one and not the other fails here."""
    import importlib

    exported = set(importlib.import_module(module_name).__all__)
    documented = _documented(module_name)
    assert exported - documented == set(), "in __all__, not in docs/api.rst"
    assert documented - exported == set(), "in docs/api.rst, not in __all__"


def test_the_public_names_resolve():
    import lofarexec
    import lofarexec.transport

    for module in (lofarexec, lofarexec.transport):
        assert len(set(module.__all__)) == len(module.__all__), "a name twice in __all__"
        for name in module.__all__:
            assert getattr(module, name) is not None
