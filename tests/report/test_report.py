"""The run report and the end-of-run summary, from journals written by real local runs."""

from __future__ import annotations

import html.parser
import json
import logging
import re
import threading
from pathlib import Path

import pytest

from lofarexec.cli import main
from lofarexec.job import ComputeJob
from lofarexec.run.journal import JOURNAL_NAME, read_journal
from lofarexec.run.report import REPORT_NAME, build_report, render_text
from lofarexec.run.report_html import MAX_BARS, render_html
from lofarexec.run.runner import JobRunner
from lofarexec.run.summary import FAILURES_SHOWN
from tests.report.runs import HOSTILE, job_command, run_jobs

pytestmark = pytest.mark.slow  # every test here reads what real jobs wrote

#: host, seconds, exit status: two hosts of two slots, one of one; jobs 2 and 5 fail.
SPECS = [("h0", 0.3, 0), ("h0", 0.3, 0), ("h1", 0.2, 3), ("h1", 0.1, 0), ("h2", 0.1, 0),
         ("h0", 0.1, 1)]
BAR = re.compile(r'<rect class="bar"[^>]*data-attempts="(\d+)"')


@pytest.fixture
def run_with_failures(make_config, caplog):
    config = make_config()
    caplog.set_level(logging.INFO)
    jobs = run_jobs(config, SPECS, max_per_node=2)
    return config, jobs, [r.getMessage() for r in caplog.records if r.name == "reported"]


def test_a_run_writes_its_report_and_logs_what_failed_and_why(run_with_failures):
    config, jobs, messages = run_with_failures
    directory = Path(config.job_directory)
    page = (directory / REPORT_NAME).read_text()
    assert [int(n) for n in BAR.findall(page)] == [1] * len(SPECS)  # one bar per attempt
    assert "job 2</b>" in page and "job 5</b>" in page and "exit status 3" in page
    assert "first line of the failure" in page  # this run's tails come from memory
    summary = messages[-9:]
    start = next(i for i, line in enumerate(summary) if line.startswith("run finished:"))
    summary = summary[start:]
    assert re.match(r"run finished: 6 jobs in [\d.]+m?s: 4 succeeded, 2 failed; slowest hosts "
                    r"\(mean job\): ", summary[0]), summary[0]
    assert summary[1].startswith("  job 2 on h1: failed, exit status 3, after ")
    assert summary[2:4] == ["    | first line of the failure", f"    | {HOSTILE}"]
    assert summary[4].startswith("  job 5 on h0: failed, exit status 1")
    assert summary[-1] == (f"journal {directory / JOURNAL_NAME}, "
                           f"report {directory / REPORT_NAME}")


def test_a_successful_run_s_summary_is_two_lines(make_config, caplog):
    config = make_config()
    caplog.set_level(logging.INFO)
    run_jobs(config, [("h0", 0, 0), ("h1", 0, 0)])
    summary = [r.getMessage() for r in caplog.records if r.name == "reported"]
    assert summary[-2].startswith("run finished: 2 jobs in ")
    assert ": 2 succeeded; slowest hosts (mean job): h" in summary[-2]
    assert summary[-1].startswith("journal ")


def test_more_failures_than_shown_are_counted(make_config, caplog):
    config = make_config()
    caplog.set_level(logging.INFO)
    run_jobs(config, [("h0", 0, 2)] * (FAILURES_SHOWN + 3), max_per_node=8)
    lines = [r.getMessage() for r in caplog.records if r.name == "reported"]
    assert sum(line.startswith("  job ") for line in lines[-80:]) == FAILURES_SHOWN
    assert "  ... and 3 more failed jobs (in the report)" in lines


def test_the_report_escapes_everything_the_journal_holds(run_with_failures):
    config, _, _ = run_with_failures
    directory = Path(config.job_directory)
    journal = directory / JOURNAL_NAME
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    for line in lines:  # a host name and a reason as hostile as a node's output
        line["host"] = "<b onmouseover=alert(2)>h</b>" if line["host"] == "h2" else line["host"]
        line["reason"] = line["reason"] and line["reason"] + " </title><script>x()</script>"
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = render_html(build_report(directory, {("x", 0): HOSTILE}))
    assert "<script" not in page and "<img" not in page and "<b onmouseover" not in page
    assert "&lt;b onmouseover=alert(2)&gt;h&lt;/b&gt;" in page
    assert "&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt;" in page


class Tags(html.parser.HTMLParser):
    """Every tag and attribute of a page, and the text of its style elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.style = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] == "style":
            self.style += data


def test_the_page_fetches_nothing(run_with_failures):
    config, _, _ = run_with_failures
    tags = Tags()
    tags.feed((Path(config.job_directory) / REPORT_NAME).read_text())
    assert {tag for tag, _ in tags.tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "code", "table", "tr",
        "th", "td", "span", "svg", "line", "text", "rect", "b", "br", "pre", "div"}
    for tag, attributes in tags.tags:
        assert not {"src", "href", "xlink:href"} & set(attributes), tag
        assert tag == "svg" or not any("http" in (value or "") for value in attributes.values())
    assert "url(" not in tags.style and "@import" not in tags.style


def test_lanes_are_host_slots_and_the_text_report_says_where_tails_are(run_with_failures):
    config, _, _ = run_with_failures
    report = build_report(config.job_directory)  # as `lofarexec report` reads it: no tails
    hosts = {host.host: host for host in report.hosts}
    assert {name: host.jobs for name, host in hosts.items()} == {"h0": 3, "h1": 2, "h2": 1}
    assert {name: host.failures for name, host in hosts.items()} == {"h0": 1, "h1": 1, "h2": 0}
    assert 1 <= hosts["h0"].lanes <= 2 and hosts["h2"].lanes == 1  # max_per_node 2
    for host in ("h0", "h1"):  # no two attempts of a lane overlap
        mine = sorted((a for a in report.attempts if a.host == host), key=lambda a: a.start)
        for lane in {a.lane for a in mine}:
            spans = [(a.start, a.end) for a in mine if a.lane == lane]
            assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    text = render_text(report)
    assert "6 job attempts: 4 succeeded, 2 failed" in text
    assert "job 2 (run " in text and "on h1: failed, exit status 3" in text
    assert "'job 2 stderr: ...' lines" in text


def test_ten_thousand_attempts_render_in_bounded_size(run_with_failures):
    """A real run's lines repeated with shifted ids and times: 10,000 attempts, 4 hosts."""
    config, _, _ = run_with_failures
    directory = Path(config.job_directory)
    lines = [json.loads(line) for line in (directory / JOURNAL_NAME).read_text().splitlines()]
    ended = [line for line in lines if line["event"] == "ended"]
    many = []
    for index in range(10_000):
        line = dict(ended[index % len(ended)], id=index, host=f"h{index % 4}")
        line["start_time"] += index * 0.05
        line["end_time"] = line["start_time"] + 0.04
        line["state"] = "failed" if index % 500 == 7 else "succeeded"
        many.append(line)
    (directory / JOURNAL_NAME).write_text("".join(json.dumps(line) + "\n" for line in many))
    report = build_report(directory)
    page = render_html(report)
    bars = [int(n) for n in BAR.findall(page)]
    assert sum(bars) == 10_000 and len(bars) <= MAX_BARS
    assert page.count('data-state="failed"') == 20  # failures are always drawn alone
    assert len(page) < 2_000_000


def test_the_report_command_writes_html_and_prints_text(run_with_failures, tmp_path, capsys):
    config, _, _ = run_with_failures
    output = tmp_path / "elsewhere.html"
    assert main(["report", str(config.job_directory), "-o", str(output)]) == 0
    assert output.read_text().startswith("<!DOCTYPE html>")
    assert capsys.readouterr().out == f"{output}\n"
    assert main(["report", str(config.job_directory), "--format", "text"]) == 0
    assert "failed job attempt(s):" in capsys.readouterr().out


def test_the_report_command_names_a_folder_without_journal(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"lofarexec: {tmp_path}: no journal.jsonl here; give the job")
    assert error.count("\n") == 1


def test_a_report_that_cannot_be_written_is_one_warning(make_config, caplog):
    config = make_config()
    (Path(config.job_directory) / REPORT_NAME).mkdir(parents=True)  # in the report's way
    caplog.set_level(logging.INFO)
    jobs = run_jobs(config, [("h0", 0, 0)])
    assert jobs[0].results["state"] == "succeeded"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "the run report" in warnings[0].getMessage()
    assert "was not written" in warnings[0].getMessage()
    assert caplog.records[-1].getMessage().endswith("(no report written)")
    assert len(read_journal(config.job_directory)) == 1


def test_a_retried_job_is_a_bar_per_attempt(run_with_failures):
    """Job 2's journal lines as a retry writes them: a started line per attempt, one ended."""
    config, _, _ = run_with_failures
    journal = Path(config.job_directory) / JOURNAL_NAME
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    first = next(i for i, line in enumerate(lines) if line["id"] == 2)
    retry = lines[first]
    earlier = dict(retry, start_time=retry["start_time"] - 1.0, attempts=1)
    journal.write_text("".join(json.dumps(line) + "\n"
                               for line in [earlier, *lines]))
    report = build_report(config.job_directory)
    job_2 = [a for a in report.attempts if a.job_id == 2]
    assert [a.state for a in job_2] == ["retried", "failed"]
    assert job_2[0].end == retry["start_time"] and "its end is not in the journal" in (
        job_2[0].reason or "")
    assert [a.job_id for a in report.failed] == [2, 5]  # a retried attempt is not a failure
    assert len(BAR.findall(render_html(report))) == len(SPECS) + 1


def test_the_report_at_run_end_covers_this_process_s_runs(make_config, caplog):
    config = make_config()
    run_jobs(config, [("h0", 0, 0)], recipe="earlier")  # another process, the same job name
    runner = JobRunner(config, recipe_name="later", error=threading.Event())
    command = job_command(Path(config.path).parent)
    for status in (0, 4):
        runner.schedule([ComputeJob("h1", command, ["0", str(status), "x"])])
    report_file = Path(config.job_directory) / REPORT_NAME
    page = report_file.read_text()
    assert len(BAR.findall(page)) == 2 and "earlier" not in page and "exit status 4" in page
    assert main(["report", str(config.job_directory)]) == 0  # the whole journal: 3 runs
    assert len(BAR.findall(report_file.read_text())) == 3


def test_a_dry_run_writes_no_report(make_config):
    config = make_config()
    JobRunner(config, recipe_name="dry", error=threading.Event(), dry_run=True).schedule(
        [ComputeJob("h0", "/bin/true")])
    assert not (Path(config.job_directory) / REPORT_NAME).exists()


def test_a_node_s_escape_sequences_are_shown_not_sent_to_the_terminal(make_config, caplog):
    config = make_config()
    caplog.set_level(logging.INFO)
    run_jobs(config, [("h0", 0, 1, "\x1b[2J\x1b]0;owned\x07cleared")])
    summary = [r.getMessage() for r in caplog.records if r.name == "reported"]
    assert "    | \\x1b[2J\\x1b]0;owned\\x07cleared" in summary
    assert not any("\x1b" in line for line in summary[-4:])
