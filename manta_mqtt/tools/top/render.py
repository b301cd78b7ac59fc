"""Draw a :class:`~.model.SiteView` with rich: a header line, the nodes, the swarms, traffic.

Everything a node or coordinator sent is shown through ``printable()`` (escaped, one line) and
markup is never interpreted, so a hostile status cannot paint the operator's terminal.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ...protocol.text import age, printable
from .model import NodeRow, SiteView, node_rows


def _size(octets: float | None) -> str:
    if octets is None:
        return "-"
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if octets >= size:
            return f"{octets / size:.1f}{unit}"
    return f"{octets:.0f}"


def _text(value: object, width: int = 40) -> Text:
    return Text(printable(str(value), one_line=True)[:width])


STATE_STYLE = {"online": "green", "busy": "cyan", "offline": "dim", "stale": "yellow"}


def _node_cells(row: NodeRow, now: float) -> list[Text]:
    s = row.status
    state = row.shown_state(now)
    heard = s.heartbeat or row.seen
    cpu, temp, mem_used, mem_total = s.cpu, s.temp, s.mem_used, s.mem_total
    uptime, started = s.uptime, s.task_started
    task = s.running or ""
    if task and started:
        task += f" {age(now - started)}"
    return [
        _text(s.node, 24),
        Text(state, style=STATE_STYLE.get(state, "")),
        Text(age(now - heard)),
        _text(s.version, 16),
        Text(age(uptime) if uptime else "-"),
        Text(f"{cpu:.0f}%" if cpu is not None else "-"),
        Text(f"{_size(mem_used)}/{_size(mem_total)}" if mem_total else "-"),
        Text(_size(s.disk_free)),
        Text(f"{temp:.0f}C" if temp is not None else "-"),
        _text(task, 30),
        _text(s.last_error or "", 40),
        Text(str(sum(s.rejected.values())) if s.rejected else ""),
    ]


def nodes_table(view: SiteView, now: float, sort: str, only: str, limit: int) -> Table:
    rows = node_rows(view, now, sort, only)
    title = f"nodes: {len(rows)} shown ({only}, by {sort})" + (f", first {limit}" if len(rows) > limit else "")
    table = Table(title=title, title_justify="left", expand=True, box=None, header_style="bold")
    for name in ("NODE", "STATE", "SEEN", "VERSION", "UP", "CPU", "MEM", "DISK", "TEMP", "TASK", "LAST ERROR", "REJ"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for row in rows[:limit]:
        table.add_row(*_node_cells(row, now))
    return table


def swarms_table(view: SiteView, now: float, limit: int) -> Table:
    table = Table(title="swarms", title_justify="left", expand=True, box=None, header_style="bold")
    for name in ("SWARM", "STATE", "ITER", "STEP", "AGE", "METRICS", "REASON"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    states = sorted(view.swarms.values(), key=lambda s: -s.updated)[:limit]
    for s in states:
        state = Text(s.state, style={"running": "cyan", "lost": "red", "failed": "red"}.get(s.state, ""))
        metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(s.metrics.items())[:3])
        table.add_row(
            _text(s.swarm, 28),
            state,
            Text(str(s.iteration)),
            _text(f"{s.step} {s.done}/{s.expected}" if s.step else "", 24),
            Text(age(now - s.updated) if s.updated else "?"),
            _text(metrics, 40),
            _text(s.reason, 40),
        )
    return table


def traffic_line(view: SiteView, now: float) -> Text:
    rates = view.traffic.rates(now)
    if not rates:
        return Text("traffic: none in the last 10 s")
    parts = [f"{kind} {m:.1f}/s {_size(b)}B/s" for kind, (m, b) in sorted(rates.items(), key=lambda kv: -kv[1][1])]
    return Text("traffic: " + " | ".join(parts))


def header(view: SiteView, now: float, where: str) -> Text:
    counts = view.counts(now)
    nodes = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
    broker = " ".join(f"{k}={printable(v, one_line=True)}" for k, v in sorted(view.broker.items()))
    line = f"manta-mqtt top - {where} - nodes: {len(view.nodes)} ({nodes}) - swarms: {len(view.swarms)}"
    line += f" - broker: {broker}" if broker else ""
    return Text(line + (f" - invalid: {view.invalid}" if view.invalid else ""))


KEYS = Text("q quit  s sort  f filter (all/online/busy/offline/stale)", style="dim")


def screen(view: SiteView, now: float, where: str, *, sort: str, only: str, height: int) -> Group:
    swarm_rows = min(len(view.swarms), 8)
    node_limit = max(3, height - swarm_rows - 12)
    return Group(
        header(view, now, where),
        traffic_line(view, now),
        Text(""),
        nodes_table(view, now, sort, only, node_limit),
        Text(""),
        swarms_table(view, now, max(1, swarm_rows)),
        KEYS,
    )
