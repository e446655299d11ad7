"""The run report as one self-contained HTML page: inline style, inline SVG, no script.

The page fetches nothing (no script, font, image or style from anywhere), so it opens from a
mail attachment or an air-gapped cluster alike. Everything taken from the journal is escaped:
host names, reasons and output come from nodes and are hostile input.

The timeline has one lane per host slot and one bar per job attempt, coloured by state; its
``<title>`` is the tooltip (job, host, state, duration, exit status). Large runs stay small:
above :data:`MAX_BARS` attempts, neighbouring succeeded attempts of a lane that lie less than a
pixel apart are drawn as one bar (its tooltip says how many; failures are always drawn alone),
lanes get thinner when there are many, and at most :data:`MAX_FAILURES_LISTED` failures are
listed in full.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable

from lofarexec.job import SUCCEEDED
from lofarexec.run.report import (
    TAIL_ELSEWHERE,
    Attempt,
    RunReport,
    clock,
    counts_text,
    duration_text,
    tail_of,
)

#: Above this many attempts, short succeeded neighbours in a lane are drawn as one bar.
MAX_BARS = 2000
#: Failed attempts listed with reason and output; the rest are counted.
MAX_FAILURES_LISTED = 1000
#: Lines of a failed job's output tail shown.
TAIL_LINES = 20
PLOT_WIDTH = 1000
LABEL_WIDTH = 170
COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "timed_out": "#ef6c00",
           "killed": "#6a1b9a", "transport_error": "#5d4037", "retried": "#f9a825",
           "running": "#9e9e9e",
           "not_started": "#cfd8dc"}
_OTHER_COLOUR = "#37474f"
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #212121; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #999; } td.n { text-align: right; }
pre { background: #f5f5f5; padding: 6px; margin: 2px 0 10px; white-space: pre-wrap; }
.key { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
svg .bar:hover { stroke: #000; stroke-width: 1; }
svg text { font: 11px system-ui, sans-serif; fill: #424242; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(report: RunReport) -> str:
    """The whole page."""
    recipes = ", ".join(dict.fromkeys(recipe for _, recipe in report.runs)) or "no runs"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        # no fetch of any kind, even if escaping were ever wrong
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'">',
        f"<title>lofarexec report: {_e(recipes)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>lofarexec report: {_e(recipes)}</h1>",
        *_summary(report), *_timeline(report), *_hosts(report), *_failures(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(report: RunReport) -> Iterable[str]:
    span = report.span
    yield (f"<p id=\"summary\">Job directory <code>{_e(report.job_directory)}</code>: "
           f"{len(report.attempts)} job attempts in {len(report.runs)} run(s): "
           f"{_e(counts_text(report.counts))}.")
    if span:
        yield (f" From {_e(clock(span[0]))} to {_e(clock(span[1]))}, wall time "
               f"{_e(duration_text(span[1] - span[0]))}, on {len(report.hosts)} host(s).")
    yield "</p><table><tr><th>run started</th><th>recipe</th><th>jobs</th><th>states</th></tr>"
    for (run, recipe), states in report.run_counts.items():
        yield (f"<tr><td>{_e(run)}</td><td>{_e(recipe)}</td>"
               f"<td class=n>{sum(states.values())}</td>"
               f"<td>{_e(counts_text(states))}</td></tr>")
    yield "</table>"


def _timeline(report: RunReport) -> Iterable[str]:
    span = report.span
    yield "<h2>Timeline</h2>"
    if span is None:
        yield "<p>No job ran.</p>"
        return
    start, end = span
    seconds = max(end - start, 1e-3)
    scale = PLOT_WIDTH / seconds
    lanes = [(host.host, lane) for host in sorted(report.hosts, key=lambda h: h.host)
             for lane in range(host.lanes)]
    row = {key: index for index, key in enumerate(lanes)}
    lane_height = 14 if len(lanes) <= 150 else max(2, 2100 // len(lanes))
    top = 20
    height = top + lane_height * len(lanes) + 4
    yield "<p>" + "".join(f'<span class="key" style="background:{colour}"></span>{_e(state)}'
                          for state, colour in COLOURS.items()) + "</p>"
    yield (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" '
           f'width="{LABEL_WIDTH + PLOT_WIDTH + 50}" height="{height}" role="img">')
    for tick in range(6):
        x = LABEL_WIDTH + tick * PLOT_WIDTH / 5
        yield (f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height}" stroke="#e0e0e0"/>'
               f'<text x="{x + 2:.1f}" y="{top - 8}">+{_e(duration_text(tick * seconds / 5))}'
               "</text>")
    if lane_height >= 9:
        for (host, lane), index in row.items():
            y = top + index * lane_height + lane_height - 3
            yield f'<text x="2" y="{y}">{_e(host)} #{lane + 1}</text>'
    ran = [a for a in report.attempts if a.start is not None]
    for attempt, count in _bars(ran, scale, merge=len(ran) > MAX_BARS):
        assert attempt.start is not None
        x = LABEL_WIDTH + (attempt.start - start) * scale
        finish = attempt.end if attempt.end is not None else end
        width = max((finish - attempt.start) * scale, 1.0)
        y = top + row[(attempt.host, attempt.lane)] * lane_height
        colour = COLOURS.get(attempt.state, _OTHER_COLOUR)
        yield (f'<rect class="bar" x="{x:.1f}" y="{y + 1}" width="{width:.1f}" '
               f'height="{max(lane_height - 2, 1)}" fill="{colour}" stroke="#fff" '
               f'data-attempts="{count}" data-state="{_e(attempt.state)}">'
               f"<title>{_e(_tooltip(attempt, count))}</title></rect>")
    yield "</svg>"


def _bars(attempts: list[Attempt], scale: float,
          merge: bool) -> Iterable[tuple[Attempt, int]]:
    """``(attempt, how many it stands for)``: each alone, or short succeeded neighbours merged
    (the first attempt of a group, stretched to the group's end)."""
    if not merge:
        yield from ((attempt, 1) for attempt in attempts)
        return
    lanes: dict[tuple[str, int], list[Attempt]] = {}
    for attempt in attempts:
        lanes.setdefault((attempt.host, attempt.lane), []).append(attempt)
    for lane in lanes.values():
        group: list[Attempt] = []
        for attempt in sorted(lane, key=lambda a: a.start or 0.0):
            joins = (group and attempt.state == SUCCEEDED and attempt.end is not None
                     and ((attempt.start or 0.0) - (group[-1].end or 0.0)) * scale < 1.0)
            if joins:
                group.append(attempt)
                continue
            yield from _group(group)
            group = [attempt] if attempt.state == SUCCEEDED and attempt.end is not None else []
            if not group:
                yield attempt, 1
        yield from _group(group)


def _group(group: list[Attempt]) -> Iterable[tuple[Attempt, int]]:
    if group:
        first, last = group[0], group[-1]
        yield dataclasses.replace(first, end=last.end), len(group)


def _tooltip(attempt: Attempt, count: int) -> str:
    if count > 1:
        return (f"{count} succeeded jobs on {attempt.host} (slot {attempt.lane + 1}), "
                f"{clock(attempt.start)} to {clock(attempt.end)}")
    status = "—" if attempt.returncode is None else attempt.returncode
    return (f"job {attempt.job_id} on {attempt.host} (slot {attempt.lane + 1}): "
            f"{attempt.state}, {duration_text(attempt.duration)}, exit status {status}"
            + (f"\n{attempt.reason}" if attempt.reason else ""))


def _hosts(report: RunReport) -> Iterable[str]:
    yield "<h2>Hosts</h2>"
    yield ('<table id="hosts"><tr><th>host</th><th>jobs</th><th>failed</th><th>slots</th>'
           "<th>mean duration</th><th>max duration</th></tr>")
    for host in report.hosts:
        yield (f"<tr><td>{_e(host.host)}</td><td class=n>{host.jobs}</td>"
               f"<td class=n>{host.failures}</td><td class=n>{host.lanes}</td>"
               f"<td class=n>{_e(duration_text(host.mean_duration))}</td>"
               f"<td class=n>{_e(duration_text(host.max_duration))}</td></tr>")
    yield "</table>"


def _failures(report: RunReport) -> Iterable[str]:
    failed = report.failed
    yield f'<h2>Failed jobs ({len(failed)})</h2><div id="failures">'
    if not failed:
        yield "<p>None.</p>"
    for attempt in failed[:MAX_FAILURES_LISTED]:
        status = "none" if attempt.returncode is None else attempt.returncode
        yield (f'<p class="failure"><b>job {attempt.job_id}</b> (run {_e(attempt.run)}, '
               f"{_e(attempt.recipe)}) on <b>{_e(attempt.host)}</b>: {_e(attempt.state)}, "
               f"exit status {_e(status)}, after {_e(duration_text(attempt.duration))}<br>"
               f"reason: {_e(attempt.reason or 'none given')}<br>"
               f"command: <code>{_e(attempt.command)}</code></p>")
        tail = report.tail(attempt)
        if tail is None:
            yield f"<p>Output: {_e(TAIL_ELSEWHERE.format(id=attempt.job_id))}.</p>"
        elif tail_of(tail, TAIL_LINES):
            yield f"<pre>{_e(chr(10).join(tail_of(tail, TAIL_LINES)))}</pre>"
        else:
            yield "<p>It wrote nothing.</p>"
    if len(failed) > MAX_FAILURES_LISTED:
        yield (f"<p>... and {len(failed) - MAX_FAILURES_LISTED} more: "
               "<code>lofarexec report JOB_DIRECTORY --format text</code> counts them; the "
               "journal lists them all.</p>")
    yield "</div>"
