r"""The fault matrix as data: one YAML file per fault type, parsed and checked here (no I/O).

A fault file names the objects that produce the fault (plain manifests; the namespace is
filled in as ``fault-<id>``), the steps after applying them (delete something, patch, wait),
how to see through the API that the fault is in effect (``visible``), and what k3sops must
report: the findings (check id, object, severity) and the root cause `diagnose` must name.

Conditions read objects with a subset of kubectl's JSONPath: ``.field``, ``.dotted\.key``,
``['key']`` (dots in keys escaped as in kubectl: ``['a\.b']``), ``[N]``, ``[*]`` and
``[?(@.path=="value")]`` (also ``!=``), with or without the braces, so that the same
expression works with ``kubectl get -o jsonpath=...``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k3sops.errors import LabError

NAMESPACE_PREFIX = "fault-"
BLOCK_FINALIZER = "k3sops.io/block"
"""The finalizer fault objects carry to stay Terminating; reset removes it."""
SEVERITIES = ("critical", "warning", "info")
ENVIRONMENTS = ("development", "staging", "production")
CLUSTER_KINDS = frozenset({
    "APIService", "Cluster", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "IngressClass", "MutatingWebhookConfiguration", "Namespace", "Node", "PersistentVolume",
    "PriorityClass", "StorageClass", "ValidatingWebhookConfiguration", "VolumeAttachment",
})
"""Kinds without a namespace (the matrix uses no other cluster-scoped kind). ``Cluster`` is
no API kind: findings about the cluster as a whole (one setting fixes them) name it."""
STATUS_KINDS = frozenset({"Volume", "VolumeAttachment"})
"""Kinds whose status a fault may write by hand: their controllers (Longhorn's manager, a CSI
external attacher) cannot run in the lab. Every other status comes from a real controller,
the scheduler or kwok."""
GENERATORS = ("node", "tls-secret")
STEP_KINDS = ("wait", "delete", "patch", "remove_finalizers")
PATCH_TYPES = ("merge", "strategic", "json")
_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DIAGNOSE = re.compile(r"^[a-z][a-z0-9.]*/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def namespace_of(fault_id: str) -> str:
    """The namespace a fault's objects live in."""
    return NAMESPACE_PREFIX + fault_id


@dataclass(frozen=True)
class Condition:
    """One fact that must hold when the fault is in effect.

    ``name`` may be an fnmatch pattern (generated names such as a Job's pods): the condition
    then holds when any matching object satisfies it (for ``exists: false``, when none does).
    """

    kind: str
    name: str
    jsonpath: str
    namespace: str | None
    equals: str | None = None
    matches: str | None = None
    exists: bool | None = None

    def describe(self) -> str:
        """A short text for progress and error messages."""
        test = (f"== {self.equals!r}" if self.equals is not None else
                f"~ /{self.matches}/" if self.matches is not None else
                "exists" if self.exists else "absent")
        return f"{self.kind}/{self.name} {self.jsonpath} {test}"

    def holds(self, objects: Iterable[Mapping[str, Any]]) -> bool:
        """Whether the condition holds for these objects (all of this kind, any namespace)."""
        mine = [o for o in objects if _object_matches(o, self.kind, self.namespace, self.name)]
        values = [v for o in mine for v in select(o, self.jsonpath)]
        if self.exists is not None:
            return bool(values) == self.exists
        if self.equals is not None:
            return any(text(v) == self.equals for v in values)
        assert self.matches is not None  # noqa: S101 - parse() guarantees one test
        return any(re.search(self.matches, text(v)) for v in values)


def _object_matches(obj: Mapping[str, Any], kind: str, namespace: str | None,
                    name: str) -> bool:
    md = obj.get("metadata") or {}
    return (obj.get("kind") == kind and md.get("namespace") == namespace
            and fnmatch.fnmatchcase(str(md.get("name", "")), name))


@dataclass(frozen=True)
class Expected:
    """A finding k3sops must make: check id, object, severity.

    ``name`` may be an fnmatch pattern for generated names (a Deployment's pods, a CronJob's
    Jobs): one or more findings match it. ``due_after`` is the rule's grace period: the
    finding is due only once the fault has been visible that many seconds.
    """

    check: str
    kind: str
    name: str
    namespace: str | None
    severity: str
    due_after: int = 0


@dataclass(frozen=True)
class Root:
    """The root cause `diagnose` must name (one of the expected findings)."""

    check: str
    kind: str
    name: str
    namespace: str | None
    due_after: int = 0


@dataclass(frozen=True)
class Step:
    """An action after the objects are applied (run in order, per fault)."""

    action: str
    kind: str = ""
    name: str = ""
    namespace: str | None = None
    patch: Any = None
    patch_type: str = "merge"
    subresource: str | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Fault:
    """One fault type of the matrix."""

    id: str
    description: str
    objects: tuple[dict[str, Any], ...]
    visible: tuple[Condition, ...]
    findings: tuple[Expected, ...]
    root: Root
    diagnose: str
    after: tuple[Step, ...] = ()
    environment: str | None = None
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    fake_status: str | None = None
    """Why a status is written by hand (only for STATUS_KINDS), shown with the fault."""

    @property
    def namespace(self) -> str:
        """The fault's own namespace."""
        return namespace_of(self.id)

    def cluster_objects(self) -> list[tuple[str, str]]:
        """(kind, name) of the cluster-scoped objects the fault creates (generated included)."""
        out = []
        for o in self.objects:
            kind = "Node" if o.get("generate") == "node" else str(o.get("kind"))
            if kind in CLUSTER_KINDS:
                out.append((kind, str(o.get("name") or o["metadata"]["name"])))
        return out

    def expected_rows(self) -> list[dict[str, Any]]:
        """The expectations as the scorer reads them (see `k3sops lab fault expected`)."""
        return [{"fault": self.id, "namespace": e.namespace, "kind": e.kind, "name": e.name,
                 "severity": e.severity, "check": e.check, "due_after": e.due_after}
                for e in self.findings]


def text(value: Any) -> str:
    """A value as a condition compares it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


# --- JSONPath (the subset kubectl users write in conditions) ---------------------------------

_TOKEN = re.compile(r"""
    \.(?P<field>(?:[A-Za-z0-9_$/-]|\\\.)+)
  | \[(?P<index>-?\d+)\]
  | \[(?P<star>\*)\]
  | \[(?P<quoted>'[^']*')\]
  | \[\?\(@(?P<fpath>[^=!]+?)\s*(?P<op>==|!=)\s*(?P<fval>'[^']*'|"[^"]*"|[^)\s]+)\s*\)\]
""", re.VERBOSE)


def _tokens(path: str) -> list[tuple[str, Any]]:
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1].strip()
    if p in ("", "."):
        return []
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(p):
        m = _TOKEN.match(p, pos)
        if m is None:
            raise ValueError(f"cannot parse JSONPath {path!r} at {p[pos:]!r}")
        if m.group("field") is not None:
            out.append(("field", m.group("field").replace("\\.", ".")))
        elif m.group("index") is not None:
            out.append(("index", int(m.group("index"))))
        elif m.group("star") is not None:
            out.append(("star", None))
        elif m.group("quoted") is not None:
            key = m.group("quoted")[1:-1]
            if re.search(r"(?<!\\)\.", key):
                # kubectl splits a quoted key on its dots too: ['a.b'] finds nothing there
                raise ValueError(f"escape the dots of key {key!r} as \\. in {path!r}, "
                                 "as kubectl's JSONPath needs")
            out.append(("field", key.replace("\\.", ".")))
        else:
            val = m.group("fval")
            if val[0] in "'\"":
                val = val[1:-1]
            out.append(("filter", (_tokens(m.group("fpath")), m.group("op"), val)))
        pos = m.end()
    return out


def check_jsonpath(path: str) -> None:
    """Raise ValueError when ``path`` is outside the supported subset."""
    _tokens(path)


def select(obj: Any, path: str) -> list[Any]:
    """The values ``path`` selects in ``obj`` (an empty list when nothing is there)."""
    return [v for v in _walk([obj], _tokens(path)) if v is not None]


def _walk(values: list[Any], tokens: list[tuple[str, Any]]) -> list[Any]:
    for kind, arg in tokens:
        nxt: list[Any] = []
        for v in values:
            if ((kind == "field" and isinstance(v, Mapping) and arg in v)
                    or (kind == "index" and isinstance(v, list) and -len(v) <= arg < len(v))):
                nxt.append(v[arg])
            elif kind == "star":
                nxt.extend(v if isinstance(v, list) else
                           list(v.values()) if isinstance(v, Mapping) else [])
            elif kind == "filter" and isinstance(v, list):
                sub, op, want = arg
                for item in v:
                    got = [text(x) for x in _walk([item], sub)]
                    if (want in got) == (op == "=="):
                        nxt.append(item)
        values = nxt
    return values


# --- parsing and validation -----------------------------------------------------------------

class _Ctx:
    """Where a value came from, for error messages: file and field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> LabError:
        return LabError(f"fault file {self.source}: {where}: {what}",
                        hint="see src/k3sops/lab/faults/README.md for the format")


def _keys(ctx: _Ctx, where: str, value: Any, required: set[str],
          optional: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.fail(where, f"must be a mapping, not {type(value).__name__}")
    missing = sorted(required - set(value))
    if missing:
        raise ctx.fail(where, f"missing {', '.join(missing)}")
    unknown = sorted(set(value) - required - set(optional))
    if unknown:
        raise ctx.fail(where, f"unknown field(s) {', '.join(unknown)} (known: "
                              f"{', '.join(sorted(required | set(optional)))})")
    return value


def _str(ctx: _Ctx, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ctx.fail(where, "must be a non-empty string")
    return value


def _due(ctx: _Ctx, where: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ctx.fail(where, "due_after must be a whole number of seconds >= 0")
    return value


def _ns_for(kind: str, fault_ns: str) -> str | None:
    return None if kind in CLUSTER_KINDS else fault_ns


def _condition(ctx: _Ctx, where: str, raw: Any, fault_ns: str) -> Condition:
    c = _keys(ctx, where, raw, {"kind", "name", "jsonpath"}, {"equals", "matches", "exists"})
    tests = [k for k in ("equals", "matches", "exists") if k in c]
    if len(tests) != 1:
        raise ctx.fail(where, "give exactly one of equals, matches, exists")
    try:
        check_jsonpath(str(c["jsonpath"]))
    except ValueError as e:
        raise ctx.fail(where, str(e)) from e
    if "exists" in c and not isinstance(c["exists"], bool):
        raise ctx.fail(where, "exists must be true or false")
    if "matches" in c:
        try:
            re.compile(str(c["matches"]))
        except re.error as e:
            raise ctx.fail(where, f"matches is not a regular expression: {e}") from e
    kind = _str(ctx, f"{where}.kind", c["kind"])
    return Condition(kind=kind, name=_str(ctx, f"{where}.name", c["name"]),
                     jsonpath=str(c["jsonpath"]), namespace=_ns_for(kind, fault_ns),
                     equals=None if "equals" not in c else text(c["equals"]),
                     matches=None if "matches" not in c else str(c["matches"]),
                     exists=c.get("exists"))


def _object(ctx: _Ctx, where: str, raw: Any, fault_id: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ctx.fail(where, "must be a mapping (a manifest or a generate entry)")
    if "generate" in raw:
        if raw["generate"] not in GENERATORS:
            raise ctx.fail(where, f"generate must be one of {', '.join(GENERATORS)}")
        allowed = ({"generate", "name", "days", "hosts"} if raw["generate"] == "tls-secret"
                   else {"generate", "name", "labels", "annotations", "taints",
                         "unschedulable"})
        _keys(ctx, where, raw, {"generate", "name"}, allowed - {"generate", "name"})
        if raw["generate"] == "tls-secret" and not isinstance(raw.get("days", 30), int):
            raise ctx.fail(where, "days must be a whole number (negative: already expired)")
        return dict(raw)
    for key in ("apiVersion", "kind", "metadata"):
        if key not in raw:
            raise ctx.fail(where, f"a manifest needs {key}")
    kind = str(raw["kind"])
    md = raw["metadata"]
    if not isinstance(md, dict) or not md.get("name"):
        raise ctx.fail(where, "metadata.name is required")
    if kind == "Namespace":
        raise ctx.fail(where, "the fault's namespace is created for it; use namespace_labels")
    ns = namespace_of(fault_id)
    if kind in CLUSTER_KINDS:
        if "namespace" in md:
            raise ctx.fail(where, f"{kind} is cluster-scoped: no metadata.namespace")
    elif md.get("namespace", ns) != ns:
        raise ctx.fail(where, f"objects live in the fault's namespace {ns}, not "
                              f"{md['namespace']}")
    return raw


def _step(ctx: _Ctx, where: str, raw: Any, fault_ns: str) -> Step:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in STEP_KINDS:
        raise ctx.fail(where, f"a step is one of: {', '.join(STEP_KINDS)}")
    action, body = next(iter(raw.items()))
    if action == "wait":
        if not isinstance(body, list) or not body:
            raise ctx.fail(where, "wait takes a non-empty list of conditions")
        return Step("wait", conditions=tuple(_condition(ctx, f"{where}.wait[{i}]", c, fault_ns)
                                             for i, c in enumerate(body)))
    b = _keys(ctx, f"{where}.{action}", body,
              {"kind", "name", "patch"} if action == "patch" else {"kind", "name"},
              {"type", "subresource"} if action == "patch" else ())
    kind = _str(ctx, f"{where}.kind", b["kind"])
    ptype = b.get("type", "merge")
    if ptype not in PATCH_TYPES:
        raise ctx.fail(where, f"patch type must be one of {', '.join(PATCH_TYPES)}")
    sub = b.get("subresource")
    if sub not in (None, "status"):
        raise ctx.fail(where, "subresource may only be status")
    if sub == "status" and kind not in STATUS_KINDS:
        raise ctx.fail(where, f"the status of a {kind} comes from its real controller here; "
                              f"only {', '.join(sorted(STATUS_KINDS))} may be written")
    return Step(action, kind=kind, name=_str(ctx, f"{where}.name", b["name"]),
                namespace=_ns_for(kind, fault_ns), patch=b.get("patch"), patch_type=ptype,
                subresource=sub)


def _expected(ctx: _Ctx, where: str, raw: Any, fault_ns: str) -> Expected:
    e = _keys(ctx, where, raw, {"check", "kind", "name", "severity"}, {"due_after"})
    if e["severity"] not in SEVERITIES:
        raise ctx.fail(where, f"severity must be one of {', '.join(SEVERITIES)}")
    kind = _str(ctx, f"{where}.kind", e["kind"])
    return Expected(check=_str(ctx, f"{where}.check", e["check"]), kind=kind,
                    name=_str(ctx, f"{where}.name", e["name"]),
                    namespace=_ns_for(kind, fault_ns), severity=e["severity"],
                    due_after=_due(ctx, where, e.get("due_after", 0)))


def parse(doc: Any, source: str) -> Fault:
    """A fault from its YAML document; LabError naming the file and field when it is wrong."""
    ctx = _Ctx(source)
    d = _keys(ctx, "top level", doc, {"id", "description", "objects", "visible", "expect"},
              {"after", "environment", "namespace_labels", "fake_status"})
    fid = _str(ctx, "id", d["id"])
    if not _ID.match(fid) or len(namespace_of(fid)) > 63:
        raise ctx.fail("id", "lower-case letters, digits and '-', at most "
                             f"{63 - len(NAMESPACE_PREFIX)} characters")
    ns = namespace_of(fid)
    if not isinstance(d["objects"], list):
        raise ctx.fail("objects", "must be a list")
    objects = tuple(_object(ctx, f"objects[{i}]", o, fid) for i, o in enumerate(d["objects"]))
    if not isinstance(d["visible"], list) or not d["visible"]:
        raise ctx.fail("visible", "must be a non-empty list of conditions")
    visible = tuple(_condition(ctx, f"visible[{i}]", c, ns) for i, c in enumerate(d["visible"]))
    after = d.get("after") or []
    if not isinstance(after, list):
        raise ctx.fail("after", "must be a list of steps")
    steps = tuple(_step(ctx, f"after[{i}]", s, ns) for i, s in enumerate(after))
    env = d.get("environment")
    if env is not None and env not in ENVIRONMENTS:
        raise ctx.fail("environment", f"must be one of {', '.join(ENVIRONMENTS)}")
    labels = d.get("namespace_labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in labels.items()):
        raise ctx.fail("namespace_labels", "must map strings to strings")
    fake = d.get("fake_status")
    writes_status = any(s.subresource == "status" for s in steps)
    if writes_status != bool(fake):
        raise ctx.fail("fake_status", "say why a status is written by hand exactly when a "
                                      "step writes one (patch with subresource: status)")
    ex = _keys(ctx, "expect", d["expect"], {"findings", "root", "diagnose"})
    if not isinstance(ex["findings"], list) or not ex["findings"]:
        raise ctx.fail("expect.findings", "must be a non-empty list")
    findings = tuple(_expected(ctx, f"expect.findings[{i}]", e, ns)
                     for i, e in enumerate(ex["findings"]))
    seen: set[tuple[str, str, str]] = set()
    for e in findings:
        key = (e.check, e.kind, e.name)
        if key in seen:
            raise ctx.fail("expect.findings", f"{e.check} on {e.kind}/{e.name} listed twice")
        seen.add(key)
    r = _keys(ctx, "expect.root", ex["root"], {"check", "kind", "name"}, {"due_after"})
    root = Root(check=_str(ctx, "expect.root.check", r["check"]),
                kind=_str(ctx, "expect.root.kind", r["kind"]),
                name=_str(ctx, "expect.root.name", r["name"]),
                namespace=_ns_for(str(r["kind"]), ns),
                due_after=_due(ctx, "expect.root", r.get("due_after", 0)))
    if (root.check, root.kind, root.name) not in seen:
        raise ctx.fail("expect.root", "the root cause must be one of expect.findings")
    diag = _str(ctx, "expect.diagnose", ex["diagnose"])
    if not _DIAGNOSE.match(diag):
        raise ctx.fail("expect.diagnose", "KIND/NAME in lower case, e.g. pod/db-0")
    return Fault(id=fid, description=" ".join(_str(ctx, "description",
                                                   d["description"]).split()),
                 objects=objects, visible=visible, findings=findings, root=root,
                 diagnose=diag, after=steps, environment=env, namespace_labels=labels,
                 fake_status=" ".join(fake.split()) if fake else None)
