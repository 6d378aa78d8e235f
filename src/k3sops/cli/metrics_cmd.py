"""`k3sops metrics [nodes|cluster|apps|all]`: key metrics from Prometheus, once or refreshing.

``--watch [SECONDS]`` refreshes every SECONDS (default 5): in place on a terminal with the table
format, otherwise one document per refresh (``-o json``: one compact JSON object per line;
``-o yaml``: one YAML document each, ``---`` separated; table: a time-stamped block each).
Ctrl-C stops with exit 130, ``--count N`` after N refreshes with the exit code of the last one
(4 if some of its queries failed); a refresh that cannot reach Prometheus at all ends the watch
with exit 1.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

from k3sops.cli.options import get_options, get_settings
from k3sops.errors import Interrupted, PartialResult, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.metrics import MetricsReport, QueryReport, Scope

DEFAULT_WATCH_SECONDS = 5.0


class ScopeArg(StrEnum):
    """Which level of metrics to show."""

    nodes = "nodes"
    cluster = "cluster"
    apps = "apps"
    all = "all"


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def optional_watch(args: Sequence[str]) -> list[str]:
    """Give a bare ``--watch``/``-w`` its default value (typer has no optional-value options).

    ``--watch`` followed by nothing, another option or the scope becomes ``--watch=5``;
    ``--watch 2`` and ``--watch=2`` are left alone, as is everything after ``--``.
    """
    out: list[str] = []
    rest = False
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if not rest and arg in ("--watch", "-w") and (nxt is None or not _is_number(nxt)):
            out.append(f"--watch={DEFAULT_WATCH_SECONDS:g}")
            continue
        rest = rest or arg == "--"
        out.append(arg)
    return out


class _OptionalWatchCommand(TyperCommand):
    """The `metrics` command, parsing ``--watch [SECONDS]`` through :func:`optional_watch`."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        """Rewrite a bare ``--watch``, then parse as usual."""
        return super().parse_args(ctx, optional_watch(args))


def register(app: typer.Typer) -> None:
    """Attach `metrics` to the root app."""
    app.command("metrics", cls=_OptionalWatchCommand)(metrics_cmd)


def _check_partial(r: MetricsReport | QueryReport) -> None:
    from k3sops.domain.metrics import MetricsReport

    if isinstance(r, MetricsReport) and r.failed_queries:
        names = ", ".join(f.name for f in r.failed_queries)
        raise PartialResult(
            f"partial result: {len(r.failed_queries)} queries failed on Prometheus at "
            f"{r.prometheus}: {names}",
            hint="the figures they feed show as 'no data'; the errors are listed above "
                 "(-o json: failed_queries)")


# --------------------------------------------------------------------------------------------
# The command


def _scopes(scope: ScopeArg) -> Sequence[Scope]:
    from k3sops.domain.metrics import SCOPES

    return SCOPES if scope is ScopeArg.all else [s for s in SCOPES if s == scope.value]


def _watch(fetch: Callable[[], MetricsReport | QueryReport], fmt: str, every: float,
           count: int | None, console: Console) -> MetricsReport | QueryReport:
    """Refresh until Ctrl-C (KeyboardInterrupt reaches the root: exit 130) or ``count``."""
    import yaml
    from rich.console import Group
    from rich.live import Live
    from rich.rule import Rule

    from k3sops.output.tables.metrics import metrics_view

    n = 0

    def more() -> bool:
        return count is None or n < count

    if fmt == "table" and console.is_terminal:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                report = fetch()
                n += 1
                live.update(Group(Rule(f"k3sops metrics · every {every:g}s · "
                                       f"{datetime.now():%H:%M:%S}"), metrics_view(report)),
                            refresh=True)
                if not more():
                    return report
                time.sleep(every)
    while True:
        report = fetch()
        n += 1
        if fmt == "json":
            console.file.write(json.dumps(report.model_dump(mode="json")) + "\n")
        elif fmt == "yaml":
            console.file.write("---\n" + yaml.safe_dump(report.model_dump(mode="json"),
                                                        sort_keys=False))
        else:
            console.print(Rule(f"{datetime.now():%Y-%m-%d %H:%M:%S}"))
            console.print(metrics_view(report))
        console.file.flush()
        if not more():
            return report
        time.sleep(every)


def metrics_cmd(
    ctx: typer.Context,
    scope: Annotated[
        ScopeArg, typer.Argument(help="Which metrics: nodes, cluster, apps or all.")
    ] = ScopeArg.all,
    query: Annotated[
        str | None,
        typer.Option("--query", help="Run this PromQL instant query instead and print its "
                                     "samples (labels and value).", metavar="PROMQL"),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Restrict applications to this environment's "
                                         "namespaces (from platform.yaml).", metavar="ENV"),
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", metavar="[SECONDS]",
                     help=f"Refresh every SECONDS (default {DEFAULT_WATCH_SECONDS:g}) until "
                          "Ctrl-C."),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option("--count", metavar="N", help="With --watch: stop after N refreshes."),
    ] = None,
) -> None:
    """Key metrics from Prometheus: nodes, cluster health, applications (or an ad-hoc query).

    Exit codes: 0 ok; 1 Prometheus unreachable; 2 bad PromQL or usage; 4 some queries failed
    (the rest is shown); 130 interrupted.
    """
    from rich.console import Console

    from k3sops.output.render import render
    from k3sops.services import metrics

    opts = get_options(ctx)
    if watch is not None and watch <= 0:
        raise UsageError(f"--watch {watch:g}: the interval must be more than 0 seconds")
    if count is not None and (watch is None or count < 1):
        raise UsageError("--count N needs --watch and N >= 1",
                         hint="e.g. --watch 5 --count 3")
    if query is not None and not query.strip():
        raise UsageError("--query is empty", hint='e.g. --query \'up{job="apiserver"}\'')
    settings = get_settings(ctx)
    namespaces = metrics.env_namespaces(settings, env)
    app_names = metrics.app_metrics(settings)
    prom = metrics.connect(settings, os.environ, Path.home())
    try:
        def fetch() -> MetricsReport | QueryReport:
            if query is not None:
                return metrics.adhoc(prom, query)
            return metrics.collect(prom, _scopes(scope), app_names, namespaces)

        try:
            if watch is None:
                report = fetch()
                render(report, opts.output.value)
            else:
                report = _watch(fetch, opts.output.value, watch, count, Console())
        except KeyboardInterrupt as e:
            # typer turns KeyboardInterrupt into a *returned* 130 when not standalone, which
            # the root entry point drops; a k3sops error keeps the exit code.
            raise Interrupted("interrupted (Ctrl-C)" + (": watch stopped" if watch else "")
                              ) from e
    finally:
        prom.close()
    _check_partial(report)
