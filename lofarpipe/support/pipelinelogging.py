"""``lofarpipe.support.pipelinelogging``: the framework's logging helpers for recipes and nodes.

- :func:`log_time`: a context that logs the wall, user and system time its body took
  (children included), at INFO, and the start and end times at DEBUG.
- :func:`log_process_output`: a finished process's stdout (DEBUG) and stderr (WARNING), minus
  the line noise LOFAR executables print.
- :class:`CatchLog4CPlus` / :class:`CatchLog4CXX`: a context that writes a log4cplus (or
  log4cxx) configuration into a working folder, so a LOFAR executable started there logs to
  ``pipeline_process.log``, and forwards that file's lines to a logger while the body runs.
- :func:`getSearchingLogger`: a logger that also keeps the records matching patterns a recipe
  registers (``logger.searchpatterns["name"] = regex``; matches in ``.results``).

Standard library only: node scripts use these on their hosts.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from string import Template
from types import TracebackType
from typing import Any

__all__ = [
    "CatchLog4CPlus",
    "CatchLog4CXX",
    "LogCatcher",
    "SearchPattern",
    "SearchPatterns",
    "SearchingLogger",
    "getSearchingLogger",
    "log_file",
    "log_process_output",
    "log_time",
]

#: how often a caught log file is looked at for new lines while its program runs
LOG_FILE_POLL_SECONDS = 0.5


class SearchPattern:
    """A compiled pattern and the records whose message it matched (``results``)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        self.results: list[logging.LogRecord] = []

    def check(self, record: logging.LogRecord) -> None:
        """Keep ``record`` when its message matches."""
        if self.pattern.search(record.getMessage()):
            self.results.append(record)

    def zero(self) -> None:
        """Forget the records kept so far."""
        self.results = []


class SearchPatterns(dict[str, SearchPattern]):
    """Patterns by name; assigning a string stores it compiled as a :class:`SearchPattern`."""

    def __setitem__(self, name: str, pattern: str | SearchPattern) -> None:
        if not isinstance(pattern, SearchPattern):
            pattern = SearchPattern(pattern)
        super().__setitem__(name, pattern)

    def check(self, record: logging.LogRecord) -> None:
        """Check ``record`` against every pattern."""
        for pattern in self.values():
            pattern.check(record)

    def zero(self, name: str) -> None:
        """Forget the records kept by pattern ``name``."""
        self[name].zero()

    def zero_all(self, name: str | None = None) -> None:
        """Forget the records kept by every pattern (``name`` is ignored, as it was)."""
        for pattern in self.values():
            pattern.zero()


class SearchingLogger(logging.Logger):
    """A logger that also checks every record it handles against its ``searchpatterns``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.searchpatterns = SearchPatterns()

    def handle(self, record: logging.LogRecord) -> None:
        super().handle(record)
        self.searchpatterns.check(record)


def getSearchingLogger(name: str) -> SearchingLogger:
    """``logging.getLogger(name)``, created as a :class:`SearchingLogger`.

    A logger of that name created earlier as a plain logger stays what it is; it is given
    ``searchpatterns`` but does not check them.
    """
    manager = logging.Logger.manager
    with _logger_class_lock:
        previous = manager.loggerClass
        manager.setLoggerClass(SearchingLogger)
        try:
            logger = logging.getLogger(name)
        finally:
            manager.loggerClass = previous
    if not hasattr(logger, "searchpatterns"):
        logger.searchpatterns = SearchPatterns()  # type: ignore[attr-defined]
    return logger  # type: ignore[return-value]


_logger_class_lock = threading.Lock()


def log_file(filename: str, logger: logging.Logger, killswitch: threading.Event) -> None:
    """Send the lines written to ``filename`` to ``logger`` (DEBUG) until ``killswitch`` is
    set, then the lines still unread; the file is created if it does not exist."""
    with open(filename, "a", encoding="utf-8"):
        pass
    with open(filename, encoding="utf-8", errors="replace") as stream:
        while True:
            stopping = killswitch.is_set()
            line = stream.readline()
            while line:
                logger.debug(line.rstrip("\n"))
                line = stream.readline()
            if stopping:
                return
            killswitch.wait(LOG_FILE_POLL_SECONDS)


class LogCatcher:
    """The context of :class:`CatchLog4CPlus`: subclasses set ``log_prop`` (a Template with
    ``$log_filename``), ``log_prop_filename``, ``working_dir`` and ``logger_name``."""

    log_prop: Template
    log_prop_filename: str
    working_dir: str
    logger_name: str

    def __enter__(self) -> logging.Logger:
        log_filename = os.path.join(self.working_dir, "pipeline_process.log")
        with open(self.log_prop_filename, "w", encoding="utf-8") as stream:
            stream.write(self.log_prop.substitute(log_filename=log_filename))
        logger = logging.getLogger(self.logger_name)
        self.killswitch = threading.Event()
        self.logging_thread = threading.Thread(
            target=log_file, args=(log_filename, logger, self.killswitch),
            name=f"log-catcher-{self.logger_name}", daemon=True)
        self.logging_thread.start()
        return logger

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.killswitch.set()  # the thread reads what is left, then ends
        self.logging_thread.join()


class CatchLog4CPlus(LogCatcher):
    """Catch the log of a log4cplus program (most LOFAR tools) run in ``working_dir``.

    Writes ``<working_dir>/<executable_name>.log_prop``, which such a program reads when
    started in ``working_dir``.
    """

    def __init__(self, working_dir: str, logger_name: str, executable_name: str) -> None:
        self.log_prop = Template(
            "log4cplus.rootLogger=DEBUG, FILE\n"
            "log4cplus.logger.TRC=TRACE9\n\n"
            "log4cplus.appender.FILE=log4cplus::RollingFileAppender\n"
            "log4cplus.appender.FILE.File=$log_filename\n"
            "log4cplus.appender.FILE.ImmediateFlush=true\n"
            "log4cplus.appender.FILE.MaxFileSize=10MB\n"
            "log4cplus.appender.FILE.layout.ConversionPattern=%l [%-3p] - %m%n\n")
        self.log_prop_filename = os.path.join(working_dir, executable_name + ".log_prop")
        self.working_dir = working_dir
        self.logger_name = logger_name


class CatchLog4CXX(LogCatcher):
    """Catch the log of a log4cxx program (ASKAP tools) run in ``working_dir``."""

    def __init__(self, working_dir: str, logger_name: str) -> None:
        self.log_prop = Template(
            "log4j.rootLogger=DEBUG, FILE\n\n"
            "log4j.appender.FILE=org.apache.log4j.RollingFileAppender\n"
            "log4j.appender.FILE.File=$log_filename\n"
            "log4j.appender.FILE.ImmediateFlush=true\n"
            "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.FILE.layout.ConversionPattern=%l [%-3p] - %m%n\n")
        self.log_prop_filename = os.path.join(working_dir, "askap.log_cfg")
        self.working_dir = working_dir
        self.logger_name = logger_name


def _cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


@contextmanager
def log_time(logger: logging.Logger) -> Iterator[None]:
    """Log the time the body took: wall, user and system seconds (INFO), even if it raises."""
    start = time.time()
    user, system = _cpu_seconds()
    try:
        yield
    finally:
        end = time.time()
        user_end, system_end = _cpu_seconds()
        logger.info("Total time %.4fs; user time: %.4fs; system time: %.4fs",
                    end - start, user_end - user, system_end - system)
        logger.debug("Start time was %.4fs; end time was %.4fs", start, end)


#: lines LOFAR executables print that say nothing; never logged
_NOISE = ("Debug: registered context Global=0\n", "tcgetattr: Invalid argument\n")


def log_process_output(process_name: str, sout: str | bytes, serr: str | bytes,
                       logger: logging.Logger) -> None:
    """Log a finished process's output (``communicate()``'s pair, text or bytes), if any."""
    texts = []
    for output in (sout, serr):
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output or ""
        for noise in _NOISE:
            text = text.replace(noise, "")
        texts.append(text)
    if texts[0].strip():
        logger.debug("%s stdout: %s", process_name, texts[0])
    if texts[1].strip():
        logger.warning("%s stderr: %s", process_name, texts[1])
