"""`k3sops lab build | up | down | status | kubeconfig | console | scenario … | fault …`: the lab.

``scenario`` injects single faults that look real to any client; ``fault`` applies the fault
matrix (one YAML file per fault type in :mod:`k3sops.lab.faults`, its README.md describes the
format): these commands only load, apply, wait and report. Heavy imports happen inside the
commands, so that ``k3sops lab --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import OutputFormat, get_options
from k3sops.errors import LabError, UsageError

if TYPE_CHECKING:
    from k3sops.lab.layout import LabLayout

lab = typer.Typer(help="The local lab: real Kubernetes, etcd, kwok, Prometheus, Alertmanager, "
                       "PostgreSQL on 127.0.0.1.", no_args_is_help=True)
scenario = typer.Typer(help="Inject faults into the lab (and remove them).", no_args_is_help=True)
fault = typer.Typer(help="The fault matrix: one namespace per fault type, each with the "
                         "findings k3sops must make.", no_args_is_help=True)
lab.add_typer(scenario, name="scenario")
lab.add_typer(fault, name="fault")


def register(app: typer.Typer) -> None:
    """Attach the lab group to the root app."""
    app.add_typer(lab, name="lab")


def _layout() -> LabLayout:
    from k3sops.lab.layout import LabLayout

    return LabLayout.from_env(os.environ, Path.home())


@contextmanager
def _progress(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step on a terminal; plain lines on stderr otherwise."""
    from rich.console import Console

    err = Console(stderr=True)
    if err.is_terminal:
        with err.status(title) as st:
            yield lambda msg: st.update(f"{title}: {msg}")
    else:
        def say(msg: str) -> None:
            print(f"[lab] {msg}", file=sys.stderr, flush=True)

        yield say


@lab.command("build")
def build_cmd(force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False) -> None:
    """Build (or find cached) the lab's Go binaries: Kubernetes, etcd, kwok, KSM, helm."""
    from rich.console import Console
    from rich.table import Table

    from k3sops.lab.build import COMPONENTS, build_component, find_go_root, installed_binaries

    layout = _layout()
    root = find_go_root(os.environ)
    rows = []
    with _progress("lab build") as say:
        for comp in COMPONENTS:
            say(f"{comp.name}")
            r = build_component(layout, comp, root, dict(os.environ),
                                on_binary=lambda b: say(f"building {b}"), force=force)
            rows.append((r.name, r.version, "built" if r.built else "cached",
                         f"{r.seconds:.0f}s", str(r.directory)))
    installed_binaries(layout, os.environ)  # fails naming any Debian package still missing
    t = Table("component", "version", "result", "time", "directory")
    for row in rows:
        t.add_row(*row)
    Console().print(t)


@lab.command("up")
def up_cmd(
    ctx: typer.Context,
    servers: Annotated[int, typer.Option(min=1, max=7, help="K3s server nodes (fake).")] = 3,
    agents: Annotated[int, typer.Option(min=0, max=200, help="K3s agent nodes (fake).")] = 3,
) -> None:
    """Start the lab (PKI, etcd, control plane, kwok, monitoring, PostgreSQL) and shape it."""
    from k3sops.lab.build import COMPONENTS, build_component, find_go_root
    from k3sops.lab.runner import up

    layout = _layout()
    t0 = time.monotonic()
    with _progress("lab up") as say:
        root = find_go_root(os.environ)
        for comp in COMPONENTS:  # a no-op when cached; a first `lab up` builds what it lacks
            build_component(layout, comp, root, dict(os.environ),
                            on_binary=lambda b: say(f"building {b} (first run only)"))
        result = up(layout, os.environ, servers=servers, agents=agents, progress=say)
    out = {"already_running": result.already_running, "kubeconfig": str(result.kubeconfig),
           "platform_file": str(result.platform_file),
           "seconds": round(time.monotonic() - t0, 1),
           "timings": {k: round(v, 2) for k, v in result.timings.items()}}
    opts = get_options(ctx)
    if opts.output is OutputFormat.table:
        state = "already running" if result.already_running else f"up in {out['seconds']}s"
        typer.echo(f"lab {state}\n  kubeconfig: {result.kubeconfig}\n"
                   f"  platform:   {result.platform_file}\n"
                   f"  try: k3sops --config {result.platform_file} status")
    else:
        _emit(out, opts.output)


@lab.command("down")
def down_cmd(purge: Annotated[bool, typer.Option(
        help="Also delete the run directory (data, logs, PKI).")] = False) -> None:
    """Stop every lab process; nothing is left running."""
    from k3sops.lab.runner import down

    stopped = down(_layout(), purge=purge)
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@lab.command("status")
def status_cmd(ctx: typer.Context) -> None:
    """Show the lab's processes and endpoints."""
    from rich.console import Console
    from rich.table import Table

    from k3sops.lab.runner import status

    st = status(_layout())
    opts = get_options(ctx)
    if opts.output is not OutputFormat.table:
        _emit(st, opts.output)
        return
    t = Table("process", "pid", "alive", "memory (RSS)",
              title=f"lab: {'up' if st['up'] else 'down'}", caption=f"total RSS "
              f"{st['rss_mib_total']} MiB")
    procs = st["processes"]
    assert isinstance(procs, list)  # noqa: S101 - shape of our own dict
    for p in procs:
        t.add_row(str(p["name"]), str(p["pid"]), "yes" if p["alive"] else "[red]no[/]",
                  f"{p['rss_mib']} MiB")
    Console().print(t)
    endpoints = st["endpoints"]
    assert isinstance(endpoints, dict)  # noqa: S101
    for k, v in endpoints.items():
        typer.echo(f"{k:>13}: {v}")
    if not st["up"]:
        dead = [str(p["name"]) for p in procs if not p["alive"]]
        raise LabError("the lab is not fully up" + (f": not running: {', '.join(dead)}"
                                                    if dead else ""),
                       hint=f"start it with `k3sops lab up` (logs in {st['run_dir']})")


@lab.command("kubeconfig")
def kubeconfig_cmd(path_only: Annotated[bool, typer.Option(
        "--path", help="Print the file's path instead of its content.")] = False) -> None:
    """Print the lab's admin kubeconfig (or its path), e.g. `export KUBECONFIG=$(... --path)`."""
    layout = _layout()
    if not layout.kubeconfig.is_file():
        raise LabError("the lab has no kubeconfig yet", hint="run `k3sops lab up`")
    typer.echo(str(layout.kubeconfig) if path_only else layout.kubeconfig.read_text(), nl=path_only)


@lab.command("console")
def console_cmd(listen: Annotated[str, typer.Option(
        help="HOST:PORT the console listens on.")] = "127.0.0.1:17700") -> None:
    """Open the web console on the lab (an account and its token file, then `serve`).

    The account has every console right; its token goes to a file, never to the terminal;
    `k3sops serve` runs in the foreground on the lab's platform file (Ctrl-C stops it).
    """
    from k3sops.lab.console import console_token

    layout = _layout()
    path = console_token(layout, os.environ)
    typer.echo(f"console: http://{listen}/ - log in with the token in {path} (valid 8 h)",
               err=True)
    sys.stderr.flush()
    # exec: the service is this process from now on (its signals, its exit code)
    os.execv(sys.executable, [sys.executable, "-m", "k3sops",  # noqa: S606  # no shell: argv
                              "-c", str(layout.platform_file), "serve", "--listen", listen])


@scenario.command("list")
def scenario_list() -> None:
    """List the fault scenarios."""
    from rich.console import Console
    from rich.table import Table

    from k3sops.lab.scenarios import SCENARIOS

    t = Table("scenario", "what it does")
    for s in SCENARIOS.values():
        t.add_row(s.name, s.description)
    Console().print(t)


@scenario.command("apply")
def scenario_apply(
    names: Annotated[list[str], typer.Argument(help="Scenario names, or all.")],
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Return only when `k3sops check` can see every fault "
        "(progress on stderr).")] = True,
    timeout: Annotated[str, typer.Option(
        help="With --wait: fail (exit 1) when a fault is still not visible after this long."
    )] = "180s",
) -> None:
    """Inject one or more faults into the running lab (and wait until each can be seen)."""
    from k3sops.domain.alerting import parse_duration
    from k3sops.lab.scenarios import SCENARIOS, apply_scenarios, wait_visible

    wanted = list(SCENARIOS) if names == ["all"] else names
    unknown = [n for n in wanted if n not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown scenario(s): {', '.join(unknown)}",
                         hint=f"known: {', '.join(SCENARIOS)} (or `all`)")
    seconds = parse_duration(timeout).total_seconds()
    layout = _layout()
    apply_scenarios(layout, os.environ, wanted)
    typer.echo(f"applied: {', '.join(wanted)}")
    if wait:
        wait_visible(layout, os.environ, wanted, timeout=seconds,
                     progress=lambda msg: typer.echo(f"  {msg}", err=True))
        typer.echo(f"visible: {', '.join(wanted)}")


@scenario.command("reset")
def scenario_reset() -> None:
    """Remove every injected fault."""
    from k3sops.lab.scenarios import reset

    reset(_layout(), os.environ)
    typer.echo("scenarios reset")


def _emit(data: object, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)


# --- the fault matrix ----------------------------------------------------------------------


def _say_fault(msg: str) -> None:
    print(f"[faults] {msg}", file=sys.stderr, flush=True)


@fault.command("list")
def fault_list_cmd(ctx: typer.Context) -> None:
    """List the fault types: id, namespace, what it does and the findings expected."""
    from k3sops.lab.faults import load_faults

    faults = load_faults()
    fmt = get_options(ctx).output
    if fmt is not OutputFormat.table:
        _emit([{"id": f.id, "namespace": f.namespace, "description": f.description,
                "environment": f.environment, "diagnose": f.diagnose,
                "fake_status": f.fake_status,
                "expected": [{k: v for k, v in r.items() if k != "fault"}
                             for r in f.expected_rows()],
                "root": {"check": f.root.check, "kind": f.root.kind, "name": f.root.name}}
               for f in faults.values()], fmt)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{len(faults)} fault types")
    for col in ("fault", "what it does", "expected findings"):
        t.add_column(col, overflow="fold")
    for f in faults.values():
        t.add_row(f.id, f.description, "\n".join(
            f"{e.severity} {e.check} {e.kind}/{e.name}" for e in f.findings))
    Console().print(t)


@fault.command("expected")
def fault_expected_cmd(ctx: typer.Context) -> None:
    """Every expected finding: {fault, namespace, kind, name, severity, check, due_after}.

    ``name`` is an fnmatch pattern when the object's name is generated (a Deployment's pods);
    ``due_after`` is the rule's grace period in seconds after the fault is visible.
    """
    from k3sops.lab.faults import expected_rows, load_faults

    rows = expected_rows(list(load_faults().values()))
    fmt = get_options(ctx).output
    if fmt is OutputFormat.table:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="expected findings (namespace: fault-FAULT unless cluster-scoped)")
        for col in ("fault", "severity", "check", "object", "due after"):
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(str(r["fault"]), str(r["severity"]), str(r["check"]),
                      f"{r['kind']}/{r['name']}", f"{r['due_after']}s" if r["due_after"] else "")
        Console().print(t)
        return
    _emit(rows, fmt)


@fault.command("apply")
def fault_apply_cmd(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(help="Fault ids, or all.")],
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Return when every fault is visible through the API.")] = True,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the faults' steps and visibility.")] = 300.0,
) -> None:
    """Apply fault types to the running lab, each in its namespace fault-ID.

    Writes <run>/platform-faults.yaml (the lab's platform file with the faults'
    environments) for `k3sops -c THAT check`.
    """
    from k3sops.lab.faults import load_faults, select
    from k3sops.lab.faults.ops import apply_faults

    chosen = select(load_faults(), ids)
    res = apply_faults(_layout(), os.environ, chosen, wait=wait, timeout=timeout,
                       progress=_say_fault)
    out = {"applied": res.applied, "skipped": res.skipped, "seconds": res.seconds,
           "visible_after_seconds": res.visible, "platform_file": str(res.platform_file)}
    fmt = get_options(ctx).output
    if fmt is not OutputFormat.table:
        _emit(out, fmt)
        return
    typer.echo(f"applied {len(res.applied)} fault(s) in {res.seconds}s"
               + (f", {len(res.visible)} visible" if wait
                  else " (not waiting for them to be visible)"))
    for fid, why in res.skipped.items():
        typer.echo(f"  skipped {fid}: {why}")
    typer.echo(f"  platform file: {res.platform_file}\n"
               f"  try: k3sops -c {res.platform_file} check --weekly")


@fault.command("reset")
def fault_reset_cmd(timeout: Annotated[float, typer.Option(
        help="Seconds to wait until everything is gone.")] = 300.0) -> None:
    """Remove every fault: their namespaces and labelled cluster-scoped objects."""
    from k3sops.lab.faults import load_faults
    from k3sops.lab.faults.ops import reset_faults

    removed = reset_faults(_layout(), os.environ, list(load_faults().values()),
                           timeout=timeout, progress=_say_fault)
    typer.echo(f"removed {len(removed)}: {', '.join(removed)}" if removed
               else "no fault was applied")
