"""Workloads whose pods are refused at creation, and ResourceQuotas that are used up.

When a controller cannot create a pod (or a CronJob a Job), the API server's refusal is all
there is to see: no pod exists to carry a status. The controllers write it in two places —
the ReplicaSet's (and so the Deployment's) ``ReplicaFailure`` condition, which they clear as
soon as a create succeeds, and ``FailedCreate`` Warning events on the StatefulSet, DaemonSet,
Job or CronJob — and the text names who refused: a ResourceQuota, the ServiceAccount, the
namespace's PodSecurity level, an admission webhook or policy, a PriorityClass, a
RuntimeClass, a LimitRange. :func:`refusal` reads those texts (as the real controllers and
admission plugins write them) into a cause and the object behind it (``cause_ref``), so a
diagnosis walks from the workload to what refused it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.capacity import quantity
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import Obj, conditions, get, meta, parse_time, raw_events

DEFAULT_SA_GRACE_SECONDS = 60
"""A namespace's ``default`` ServiceAccount is made by a controller moments after the
namespace: a workload created with its namespace may be refused once before it exists."""
QUOTA_NEAR = 0.9
"""A quota resource at or above this share of its hard limit is reported as info."""

# What the controllers put before the API server's error.
_PREFIXES = re.compile(
    r"^(?:\(combined from similar events\):\s*)?"
    r"(?:Error creating(?: job)?:\s*"
    r"|create (?:Pod|Claim) \S+(?: for Pod \S+)? in StatefulSet \S+ failed error:\s*)?")
_FORBIDDEN = re.compile(r'^(?:[a-z.]+ "[^"]*" is forbidden:\s*)')
_QUOTA = re.compile(r"exceeded quota: (?P<name>[^,]+), requested: (?P<requested>\S+), "
                    r"used: (?P<used>\S+), limited: (?P<limited>\S+)")
_QUOTA_UNSPECIFIED = re.compile(r"failed quota: (?P<name>[^:]+): must specify (?P<what>.+)")
_SERVICE_ACCOUNT = re.compile(r"error looking up service account (?P<ns>[^/\s]+)/(?P<name>[^:\s]+)")
_POD_SECURITY = re.compile(r'violates PodSecurity "(?P<level>[^":]+):(?P<version>[^"]+)":\s*'
                           r"(?P<detail>.*)")
_WEBHOOK_DENIED = re.compile(r'admission webhook "(?P<hook>[^"]+)" denied the request:?\s*'
                             r"(?P<detail>.*)")
_WEBHOOK_FAILED = re.compile(r'failed calling webhook "(?P<hook>[^"]+)":\s*(?P<detail>.*)')
_POLICY = re.compile(r"ValidatingAdmissionPolicy '(?P<policy>[^']+)' with binding "
                     r"'(?P<binding>[^']+)' denied request:\s*(?P<detail>.*)")
_PRIORITY = re.compile(r"no PriorityClass with name (?P<name>\S+) was found")
_RUNTIME = re.compile(r'RuntimeClass "(?P<name>[^"]+)" not found')
_LIMIT_RANGE = re.compile(r"(?:maximum|minimum) \S+ usage per (?:Container|Pod|"
                          r"PersistentVolumeClaim) is|max limit to request ratio per")
_TERMINATING = re.compile(r"unable to create new content in namespace \S+ because it is "
                          r"being terminated")


@dataclass(frozen=True)
class Refusal:
    """Why the API server refused a create, read from the controller's message.

    Attributes:
        cause: quota, quota-unspecified, serviceaccount, podsecurity, webhook-denied,
            webhook-unreachable, policy, priorityclass, runtimeclass, limitrange,
            namespace-terminating, invalid, other.
        detail: the cause in a few words, for the finding's message.
        message: the API server's error without the controller's prefixes.
        cause_ref: the object that refused (kind, namespace, name), when the text names it.
        facts: what else the text says (quota figures, the webhook's name, ...).
    """

    cause: str
    detail: str
    message: str
    cause_ref: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def _ref(kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    return {"kind": kind, "namespace": namespace, "name": name}


def _quota_figures(requested: str, used: str, limited: str) -> list[dict[str, str]]:
    """``pods=1`` lists of the quota message, by resource."""
    def pairs(text: str) -> dict[str, str]:
        return dict(p.split("=", 1) for p in text.split(",") if "=" in p)
    req, use, lim = pairs(requested), pairs(used), pairs(limited)
    return [{"resource": r, "requested": req[r], "used": use.get(r, "?"),
             "hard": lim.get(r, "?")} for r in req]


def refusal(message: str, namespace: str | None) -> Refusal:  # noqa: PLR0911 - one per cause
    """The cause of a create refusal, from a FailedCreate event or a ReplicaFailure condition."""
    text = _FORBIDDEN.sub("", _PREFIXES.sub("", message.strip(), count=1), count=1)
    if m := _QUOTA.search(text):
        figures = _quota_figures(m["requested"], m["used"], m["limited"])
        shown = ", ".join(f"{f['resource']}: {f['used']}/{f['hard']} used, {f['requested']} "
                          "requested" for f in figures)
        return Refusal("quota", f"exceeded quota {m['name']} ({shown})", text,
                       _ref("ResourceQuota", namespace, m["name"]),
                       {"quota": m["name"], "resources": figures})
    if m := _QUOTA_UNSPECIFIED.search(text):
        parts = [p.split(" for: ", 1) for p in m["what"].split(";")]
        shown = "; ".join(f"{p[0].strip()}, which container {p[1].strip()} does not set"
                          if len(p) == 2 else p[0].strip() for p in parts)
        return Refusal("quota-unspecified", f"quota {m['name']} requires {shown}", text,
                       _ref("ResourceQuota", namespace, m["name"]),
                       {"quota": m["name"], "must_specify": m["what"]})
    if m := _SERVICE_ACCOUNT.search(text):
        missing = "not found" in text
        return Refusal("serviceaccount",
                       f"ServiceAccount {m['ns']}/{m['name']} "
                       + ("does not exist" if missing else "could not be looked up"), text,
                       _ref("ServiceAccount", m["ns"], m["name"]),
                       {"service_account": m["name"], "not_found": missing})
    if m := _POD_SECURITY.search(text):
        first = m["detail"].split("), ")[0] + (")" if "), " in m["detail"] else "")
        return Refusal("podsecurity",
                       f'violates the namespace\'s PodSecurity level "{m["level"]}:'
                       f'{m["version"]}": {first}', text,
                       _ref("Namespace", None, namespace) if namespace else None,
                       {"level": m["level"], "version": m["version"], "violations": m["detail"]})
    if m := _POLICY.search(text):
        return Refusal("policy", f"ValidatingAdmissionPolicy {m['policy']} denied it: "
                       f"{m['detail']}", text,
                       _ref("ValidatingAdmissionPolicy", None, m["policy"]),
                       {"policy": m["policy"], "binding": m["binding"]})
    if m := _WEBHOOK_DENIED.search(text):
        return Refusal("webhook-denied", f"admission webhook {m['hook']} denied it"
                       + (f": {m['detail']}" if m["detail"] else ""), text, None,
                       {"webhook": m["hook"]})
    if m := _WEBHOOK_FAILED.search(text):
        return Refusal("webhook-unreachable", f"admission webhook {m['hook']} cannot be "
                       f"called ({m['detail']})", text, None, {"webhook": m["hook"]})
    if m := _PRIORITY.search(text):
        return Refusal("priorityclass", f"PriorityClass {m['name']} does not exist", text,
                       _ref("PriorityClass", None, m["name"]), {"priority_class": m["name"]})
    if m := _RUNTIME.search(text):
        return Refusal("runtimeclass", f"RuntimeClass {m['name']} does not exist", text,
                       _ref("RuntimeClass", None, m["name"]), {"runtime_class": m["name"]})
    if _LIMIT_RANGE.search(text):
        return Refusal("limitrange", f"a LimitRange of namespace {namespace} forbids it: {text}",
                       text)
    if _TERMINATING.search(text):
        return Refusal("namespace-terminating", "its namespace is being deleted", text)
    if " is invalid: " in text:
        return Refusal("invalid", f"the pod is invalid: {text.split(' is invalid: ', 1)[1]}",
                       text)
    return Refusal("other", text, text)


def _event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime")
               or ev.get("eventTime") or get(ev, "metadata", "creationTimestamp") or "")


def _first_time(ev: Obj) -> str:
    return str(ev.get("firstTimestamp") or ev.get("eventTime") or _event_time(ev))


def _failing_events(ctx: CheckContext, kind: str, ns: str | None, name: str,
                    ) -> list[Obj]:
    """FailedCreate events newer than the newest SuccessfulCreate: the current streak."""
    events = raw_events(ctx.snapshot, kind, ns, name)
    ok = max((_event_time(e) for e in events if e.get("reason") == "SuccessfulCreate"),
             default="")
    return [e for e in events if e.get("reason") == "FailedCreate" and e.get("type") == "Warning"
            and _event_time(e) > ok]


def _webhook_configs(ctx: CheckContext) -> dict[str, list[dict[str, Any]]]:
    """Webhook name -> the configurations that define it (read once per run)."""
    def build() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for plural, kind in (("validatingwebhookconfigurations",
                              "ValidatingWebhookConfiguration"),
                             ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration")):
            for cfg in ctx.snapshot.get(plural):
                for hook in cfg.get("webhooks") or []:
                    out[str(hook.get("name"))].append(_ref(kind, None, meta(cfg)[1]))
        return out
    ctx.snapshot.get("validatingwebhookconfigurations")
    ctx.snapshot.get("mutatingwebhookconfigurations")
    return ctx.snapshot.cached("r1:webhook_configs", build)  # type: ignore[no-any-return]


def _with_webhook_ref(ctx: CheckContext, r: Refusal) -> tuple[Refusal, dict[str, Any]]:
    """A webhook refusal with the configuration that holds the webhook (when readable)."""
    extra: dict[str, Any] = {}
    hook = r.facts.get("webhook")
    if hook is None:
        return r, extra
    unread = [f"{k}: {why}" for k in ("validatingwebhookconfigurations",
                                      "mutatingwebhookconfigurations")
              if (why := ctx.unread(k))]
    configs = _webhook_configs(ctx).get(str(hook), [])
    if configs:
        ref: Any = configs[0] if len(configs) == 1 else configs
        return Refusal(r.cause, r.detail, r.message, ref, r.facts), extra
    if unread:
        extra["webhook_configurations"] = "could not read: " + "; ".join(unread)
    else:
        extra["webhook_configurations"] = f"no configuration defines webhook {hook} any more"
    return r, extra


@dataclass
class _Failure:
    kind: str
    obj: Obj
    message: str
    since: str | None
    via: dict[str, Any] = field(default_factory=dict)
    events: list[Obj] = field(default_factory=list)


def _age(ctx: CheckContext, since: str | None) -> float | None:
    at = parse_time(since)
    return None if at is None else (ctx.snapshot.now - at).total_seconds()


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _live(ctx: CheckContext, kind: str) -> list[Obj]:
    return [o for o in ctx.snapshot.get(kind) if ctx.in_scope(meta(o)[0]) and ix.live(o)]


def _replica_failures(ctx: CheckContext) -> dict[tuple[str, str | None, str], _Failure]:
    """Deployments and ReplicaSets whose ReplicaFailure condition is True, by top workload."""
    out: dict[tuple[str, str | None, str], _Failure] = {}
    for d in _live(ctx, "deployments"):
        c = conditions(d).get("ReplicaFailure")
        if c and c.get("status") == "True" and _int(get(d, "spec", "replicas", default=1)) > 0:
            out[("Deployment", *meta(d))] = _Failure(
                "Deployment", d, str(c.get("message") or c.get("reason") or ""),
                c.get("lastTransitionTime"))
    for rs in _live(ctx, "replicasets"):
        cond = conditions(rs).get("ReplicaFailure")
        if not (cond and cond.get("status") == "True") or _int(get(rs, "spec", "replicas")) == 0:
            continue
        ns, name = meta(rs)
        owner = ix.controller_of(rs)
        dep: Obj | None = None
        if owner and owner[0] == "Deployment":
            dep = ix.find(ctx.snapshot, "deployments", ns, owner[1])
            if dep is not None and not ix.live(dep):
                continue  # its Deployment is being deleted: the ReplicaSet goes with it
        key = ("Deployment", ns, meta(dep)[1]) if dep is not None else ("ReplicaSet", ns, name)
        failure = out.get(key) or _Failure(key[0], dep if dep is not None else rs,
                                           str(cond.get("message") or cond.get("reason") or ""),
                                           cond.get("lastTransitionTime"))
        if dep is not None:
            failure.via = {"replicaset": name}
        out[key] = failure
    return out


def _job_lacks_pods(job: Obj) -> bool:
    """An unfinished, unsuspended Job with fewer active pods than it runs at once."""
    conds = conditions(job)
    if get(job, "spec", "suspend") or any(
            (conds.get(t) or {}).get("status") == "True"
            for t in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")):
        return False
    parallelism = _int(get(job, "spec", "parallelism", default=1))
    completions = get(job, "spec", "completions")
    wanted = parallelism if completions is None else min(
        parallelism, _int(completions) - _int(get(job, "status", "succeeded")))
    return _int(get(job, "status", "active")) < wanted


def _pods_missing(kind: str, obj: Obj) -> bool:
    """Whether the workload has fewer pods than it wants (so a refused create matters now)."""
    if kind == "StatefulSet":
        return _int(get(obj, "status", "replicas")) < _int(get(obj, "spec", "replicas",
                                                                default=1))
    if kind == "DaemonSet":
        return (_int(get(obj, "status", "currentNumberScheduled"))
                < _int(get(obj, "status", "desiredNumberScheduled")))
    if kind == "Job":
        return _job_lacks_pods(obj)
    return kind == "CronJob" and not get(obj, "spec", "suspend")


def _event_failures(ctx: CheckContext) -> dict[tuple[str, str | None, str], _Failure]:
    """StatefulSets, DaemonSets, Jobs (and CronJobs) with a current FailedCreate streak."""
    out: dict[tuple[str, str | None, str], _Failure] = {}
    if ctx.unread("events"):
        return out
    kinds = [("statefulsets", "StatefulSet"), ("daemonsets", "DaemonSet"), ("jobs", "Job")]
    if not ctx.unread("cronjobs"):
        kinds.append(("cronjobs", "CronJob"))
    for plural, kind in kinds:
        for obj in _live(ctx, plural):
            if not _pods_missing(kind, obj):
                continue
            ns, name = meta(obj)
            failing = _failing_events(ctx, kind, ns, name)
            if failing:
                out[(kind, ns, name)] = _Failure(
                    kind, obj, str(failing[0].get("message") or ""),
                    min(_first_time(e) for e in failing), events=failing)
    return out


def _ready(kind: str, obj: Obj) -> int:
    if kind == "DaemonSet":
        return _int(get(obj, "status", "numberReady"))
    if kind in ("Job", "CronJob"):
        return _int(get(obj, "status", "ready")) + _int(get(obj, "status", "active"))
    return _int(get(obj, "status", "readyReplicas"))


@check("workload-create-failed", "Workloads can create their pods",
       reads=("deployments", "replicasets", "statefulsets", "daemonsets", "jobs"),
       uses=("events", "cronjobs", "validatingwebhookconfigurations",
             "mutatingwebhookconfigurations"))
def workload_create_failed(ctx: CheckContext) -> list[Finding]:
    """Workloads whose pods (CronJobs: Jobs) the API server refuses to create, and why.

    Deployments and ReplicaSets are judged by their ReplicaFailure condition (current by
    construction); StatefulSets, DaemonSets, Jobs and CronJobs by FailedCreate events newer
    than their last SuccessfulCreate while they still lack pods. Without events only the
    first are judged (the rule is then partial). A failure during a namespace's deletion is
    the deletion's, not the workload's.
    """
    failures = {**_replica_failures(ctx), **_event_failures(ctx)}
    out = []
    for (kind, ns, name), f in sorted(failures.items(), key=lambda kv: str(kv[0])):
        r = refusal(f.message, ns)
        if r.cause == "namespace-terminating":
            continue
        age = _age(ctx, f.since)
        if (r.cause == "serviceaccount" and r.cause_ref and r.cause_ref["name"] == "default"
                and age is not None and age < DEFAULT_SA_GRACE_SECONDS):
            continue  # the namespace's default ServiceAccount is on its way
        r, extra = _with_webhook_ref(ctx, r)
        ready = _ready(kind, f.obj)
        batch = kind in ("Job", "CronJob")
        # A batch run that cannot start is late work, not users without service (warning).
        severity: Severity = "critical" if ready == 0 and not batch else "warning"
        what = "jobs" if kind == "CronJob" else "pods"
        evidence: dict[str, Any] = {
            "cause": r.cause, "refused_by": r.detail, "error": r.message, **r.facts,
            "since": f.since, "ready": ready, **f.via, **extra}
        if r.cause_ref is not None:
            evidence["cause_ref"] = r.cause_ref
        if f.events:
            evidence["events"] = [{"reason": e.get("reason"), "message": e.get("message"),
                                   "count": e.get("count"), "last": _event_time(e) or None}
                                  for e in f.events[:3]]
        elif ctx.unread("events"):
            evidence["events"] = f"could not read events: {ctx.unread('events')}"
        out.append(ctx.finding(
            "workload-create-failed", severity, kind, ns, name,
            f"{kind.lower()} {ns}/{name} cannot create {what}: {r.detail}",
            "workload-create-failed", evidence))
    return out


def _figures(quota: Obj) -> list[dict[str, Any]]:
    hard = get(quota, "status", "hard", default={}) or get(quota, "spec", "hard", default={})
    used = get(quota, "status", "used", default={}) or {}
    out = []
    for resource, limit in (hard or {}).items():
        h, u = quantity(limit), quantity(used.get(resource, "0"))
        if h is None or u is None or h <= 0:
            continue  # a hard limit of 0 forbids a resource on purpose: nothing to use up
        out.append({"resource": resource, "used": used.get(resource, "0"), "hard": limit,
                    "share": round(u / h, 3)})
    return out


@check("quota-exhausted", "ResourceQuotas have room", reads=("resourcequotas",))
def quota_exhausted(ctx: CheckContext) -> list[Finding]:
    """ResourceQuotas with a resource used up (warning) or at 90% of it (info).

    A resource whose hard limit is 0 is a prohibition (no LoadBalancers here), not a budget.
    """
    out = []
    for quota in _live(ctx, "resourcequotas"):
        ns, name = meta(quota)
        figures = _figures(quota)
        full = [f for f in figures if f["share"] >= 1]
        near = [f for f in figures if QUOTA_NEAR <= f["share"] < 1]
        if not full and not near:
            continue
        shown = ", ".join(f"{f['resource']} {f['used']}/{f['hard']}" for f in full or near)
        evidence: Mapping[str, Any] = {"used_up": full, "nearly_used_up": near,
                                       "scopes": get(quota, "spec", "scopes")}
        if full:
            out.append(ctx.finding(
                "quota-exhausted", "warning", "ResourceQuota", ns, name,
                f"resourcequota {ns}/{name} is used up ({shown}): new pods or objects it "
                "counts are refused", "quota-exhausted", dict(evidence)))
        else:
            out.append(ctx.finding(
                "quota-exhausted", "info", "ResourceQuota", ns, name,
                f"resourcequota {ns}/{name} is nearly used up ({shown})", "quota-exhausted",
                dict(evidence)))
    return out
