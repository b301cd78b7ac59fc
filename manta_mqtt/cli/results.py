"""``manta-mqtt results``: the runs in a folder as a table, one run's outcome, its values exported.

Everything shown may quote what nodes sent (errors, tags, metric names): it goes through
``printable()``. A value is printed as JSON only when it is JSON (arrays as lists, up to a
bound); bytes and large arrays are written to a file with ``--out`` instead.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import click

from ..coordinator.store import RunStore
from ..protocol.text import printable

#: Arrays up to this many elements are printed as JSON lists; larger ones need --out.
MAX_JSON_ELEMENTS = 100_000
#: Results up to this size are read as metrics for the table and the plot; larger ones are models.
METRICS_MAX_BYTES = 64 * 1024
MAX_PLOTS = 12


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tag", help="Show the values of this result tag.")
@click.option("--iteration", type=int, help="Only this iteration.")
@click.option("--global", "global_tag", help="Show a global's value at the end of the run (or --iteration).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --global: write its value to this file: .npy (an array), .npz (a dict of arrays), else raw bytes.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG of every scalar metric per node over the iterations (needs manta-mqtt[plot]).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def results(
    run_dir: Path,
    tag: str | None,
    iteration: int | None,
    global_tag: str | None,
    out: Path | None,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Read a run's results (RUN_DIR is manta_runs/<swarm id>, or manta_runs for a table of runs)."""
    if out is not None and global_tag is None:
        raise click.UsageError("--out writes a global's value: give --global NAME")
    if not (run_dir / "index.sqlite").exists():
        if global_tag or tag or plot:
            raise click.ClickException(f"{run_dir} is not a run (no index.sqlite): name one of the runs it lists")
        return list_runs(run_dir, as_json)
    store = RunStore.open(run_dir)
    try:
        if plot is not None:
            write_plot(store, plot)
            click.echo(f"wrote {plot}")
        elif global_tag:
            try:
                value = store.global_value(global_tag, iteration)
            except KeyError:
                raise click.ClickException(f"no global {global_tag!r} in this run") from None
            if out is not None:
                export(value, out, global_tag)
                click.echo(f"wrote {out}")
            else:
                print_value(value, as_json)
        elif tag:
            print_value({str(k): v for k, v in store.results(tag, iteration).items()}, as_json)
        elif as_json:
            print_value(store.summary() | {"runs": store.runs()}, True)
        else:
            show_run(store)
    finally:
        store.close()


# --- the table of runs ----------------------------------------------------------------------------


def run_row(folder: Path) -> dict[str, Any]:
    """One run's line: id, state, start, iterations, nodes, final metrics."""
    store = RunStore.open(folder)
    try:
        swarm, final = store.meta("swarm", {}), store.meta("final")
        metrics = (final or {}).get("metrics") or store.meta("metrics", {})
        return {
            "id": swarm.get("id") or folder.name,
            "name": swarm.get("name", ""),
            "state": final["state"] if final else "unfinished",  # killed, or running now
            "reason": (final or {}).get("reason", ""),
            "started": swarm.get("started"),
            "iterations": len(store.iterations()),
            "nodes": len(store.nodes()),
            "metrics": metrics,
            "path": str(folder),
        }
    finally:
        store.close()


def list_runs(runs_dir: Path, as_json: bool) -> None:
    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    rows = [run_row(p) for p in folders if (p / "index.sqlite").is_file()]
    rows.sort(key=lambda r: r["started"] or 0, reverse=True)  # newest first
    skipped = [p.name for p in folders if not (p / "index.sqlite").is_file()]
    if as_json:
        print_value(rows, True)
        return
    if not rows:
        click.echo("no runs here" + (f" ({len(skipped)} folder(s) without a run)" if skipped else ""))
        return
    click.echo(f"{'RUN':<32} {'STATE':<12} {'STARTED':<16} {'ITER':>5} {'NODES':>5}  METRICS")
    for r in rows:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"])) if r["started"] else "?"
        metrics = "  ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items())[:4])
        line = f"{r['id']:<32} {r['state']:<12} {started:<16} {r['iterations']:>5} {r['nodes']:>5}  {metrics}"
        click.echo(printable(line.rstrip(), one_line=True))
    if skipped:
        click.echo(printable(f"not runs (no index.sqlite): {', '.join(skipped)}", one_line=True))


def show_run(store: RunStore) -> None:
    summary = store.summary()
    final, swarm = summary["final"], summary["swarm"]
    state = f"{final['state']}: {final.get('reason', '')}" if final else "unfinished (killed, or running now)"
    click.echo(printable(f"swarm {swarm.get('id')} ({swarm.get('name')}): {state}"))
    click.echo(printable(f"iterations: {summary['iterations']}  result tags: {', '.join(summary['tags'])}"))
    for row in store.runs():
        mark = "ok" if row["ok"] else "FAILED"
        where = f"{row['task']:<12} {row['node']:<14}"
        click.echo(printable(f"  iteration {row['iteration']:>3}  {where} {mark:<6} {row['duration']:.2f}s"))
    for q in summary["quarantined"]:
        first = str(q["error"]).strip().splitlines()[-1:] or [""]
        click.echo(printable(f"quarantined: {q['node']} (iteration {q['iteration']}, {q['task']}): {first[0]}"))


# --- values ---------------------------------------------------------------------------------------


def print_value(value: Any, as_json: bool) -> None:
    """JSON; with ``as_json``, strictly so (an array is a list; bytes or a huge array: refused)."""
    click.echo(json.dumps(value, indent=2, default=_strict if as_json else _summarised))


def _strict(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.size > MAX_JSON_ELEMENTS:
            raise click.ClickException(
                f"an array of {value.size} elements is too large for --json: write it with --global NAME --out FILE.npy"
            )
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        raise click.ClickException(f"{len(value)} raw bytes have no JSON form: write them with --global NAME --out F")
    return str(value)


def _summarised(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return {"ndarray": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes (--out FILE writes them)"
    return str(value)


def export(value: Any, out: Path, name: str) -> None:
    """Write a global's value by the file's extension; a value of another kind is an error."""
    import numpy as np

    kind = type(value).__name__
    suffix = out.suffix.lower()
    if suffix == ".npy":
        if not isinstance(value, np.ndarray):
            raise click.ClickException(f"global {name} is a {kind}, not an array: .npy does not fit")
        with out.open("wb") as f:
            np.save(f, value, allow_pickle=False)
    elif suffix == ".npz":
        if not (isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values())):
            raise click.ClickException(f"global {name} is a {kind}, not a dict of arrays: .npz does not fit")
        with out.open("wb") as f:
            np.savez(f, **{str(k): v for k, v in value.items()})
    elif isinstance(value, bytes | bytearray):
        out.write_bytes(bytes(value))
    else:
        hint = ".npy" if isinstance(value, np.ndarray) else ".npz" if isinstance(value, dict) else "--json"
        raise click.ClickException(f"global {name} is a {kind}, not raw bytes: use {hint}")


# --- the plot -------------------------------------------------------------------------------------


def scalars(tag: str, value: Any) -> list[tuple[str, float]]:
    """The numbers a result holds: itself (``tag``), or a dict's numeric entries (``tag.key``)."""
    items = [(tag, value)] if not isinstance(value, dict) else [(f"{tag}.{k}", v) for k, v in value.items()]
    out = []
    for name, v in items:
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append((name, float(v)))
    return out


def write_plot(store: RunStore, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise click.ClickException("--plot needs matplotlib: pip install 'manta-mqtt[plot]'") from None
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}  # metric -> node -> (iteration, value)
    for it, node, tag, value in store.small_results(METRICS_MAX_BYTES):
        for name, number in scalars(tag, value):
            series.setdefault(name, {}).setdefault(node, []).append((it, number))
    if not series:
        raise click.ClickException("this run holds no scalar metrics to plot")
    names = sorted(series)[:MAX_PLOTS]
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.4 * len(names)), squeeze=False, sharex=True)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for node, points in sorted(series[name].items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=printable(node))
        ax.set_ylabel(printable(name, one_line=True))
        if len(series[name]) <= 10:
            ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("iteration")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
