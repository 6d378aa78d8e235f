"""Ingresses: their class, their TLS secrets and certificates, hosts claimed twice.

The backends themselves are judged by ``ingress-backend-missing`` (endpoints). K3s installs
Traefik with the default IngressClass ``traefik``; an Ingress naming a class no IngressClass
defines is served by no controller. Certificates are read from the Secret's projection (its
``tls.crt`` validity, never the key).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import younger_than
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import Obj, get, meta, parse_time

CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
CERT_MANAGER_ANNOTATIONS = ("cert-manager.io/cluster-issuer", "cert-manager.io/issuer")
CERT_MANAGER_GRACE_SECONDS = 600
"""cert-manager creates the Secret once the certificate is issued (ACME takes minutes)."""
CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
CRITICAL_DAYS = 3
TLS_KEYS = ("tls.crt", "tls.key")
DEFAULT_BACKEND = "(default backend)"


def _ingresses(ctx: CheckContext) -> list[Obj]:
    return [i for i in ctx.snapshot.get("ingresses") if ctx.in_scope(meta(i)[0]) and ix.live(i)]


def ingress_class(ing: Obj) -> tuple[str | None, str]:
    """The class an Ingress asks for and where it says so (``spec``, ``annotation``, ``none``)."""
    spec = get(ing, "spec", "ingressClassName")
    if spec:
        return str(spec), "spec"
    ann = get(ing, "metadata", "annotations", CLASS_ANNOTATION)
    if ann:
        return str(ann), "annotation"
    return None, "none"


@check("ingress-class-missing", "Ingresses name an existing IngressClass",
       reads=("ingresses", "ingressclasses"))
def ingress_class_missing(ctx: CheckContext) -> list[Finding]:
    """Ingresses whose class no IngressClass defines: no controller serves them.

    ``spec.ingressClassName`` naming a missing class: warning (controllers match that field
    against IngressClass objects). The deprecated ``kubernetes.io/ingress.class`` annotation
    naming a missing class, or no class at all while no IngressClass is the default: info —
    a controller started for that annotation value, or one that serves class-less Ingresses
    (Traefik as K3s configures it does), may still serve it.
    """
    classes = {meta(c)[1]: c for c in ctx.snapshot.get("ingressclasses")}
    defaults = sorted(n for n, c in classes.items()
                      if get(c, "metadata", "annotations", DEFAULT_CLASS_ANNOTATION) == "true")
    out = []
    for ing in _ingresses(ctx):
        ns, name = meta(ing)
        cls, source = ingress_class(ing)
        severity: Severity
        if cls is not None and cls in classes:
            continue
        if source == "spec":
            severity = "warning"
            message = (f"ingress {ns}/{name} asks for IngressClass {cls}, which does not "
                       "exist: no ingress controller serves it")
        elif source == "annotation":
            severity = "info"
            message = (f"ingress {ns}/{name} names class {cls} in the deprecated "
                       f"{CLASS_ANNOTATION} annotation and no IngressClass {cls} exists: only "
                       "a controller started for that class serves it")
        elif defaults:
            continue  # served by the default class
        else:
            severity = "info"
            message = (f"ingress {ns}/{name} names no class and no IngressClass is the "
                       "default: only a controller that watches class-less Ingresses serves it")
        out.append(ctx.finding(
            "ingress-class-missing", severity, "Ingress", ns, name, message,
            "ingress-class-missing",
            {"ingress_class": cls, "named_in": source, "existing_classes": sorted(classes),
             "default_classes": defaults,
             **({"cause_ref": {"kind": "IngressClass", "namespace": None, "name": cls}}
                if cls else {})}))
    return out


def _tls_problem(secret: Obj | None) -> str | None:
    if secret is None:
        return "does not exist"
    keys = set(secret.get("keys") or [])
    missing = [k for k in TLS_KEYS if k not in keys]
    if missing:
        return (f"has no {' and no '.join(missing)} (type {secret.get('type')}, keys: "
                f"{', '.join(sorted(keys)) or 'none'})")
    cert = get(secret, "certificates", "tls.crt")
    if isinstance(cert, Mapping) and cert.get("error"):
        return f"holds no usable certificate in tls.crt ({cert['error']})"
    return None


@check("ingress-tls-secret-missing", "Ingress TLS secrets exist and hold a certificate",
       reads=("ingresses", "secrets"))
def ingress_tls_secret_missing(ctx: CheckContext) -> list[Finding]:
    """Ingress TLS sections naming a Secret that is missing or holds no certificate and key.

    The controller then serves its default (self-signed) certificate for those hosts: browsers
    refuse it. An Ingress annotated for cert-manager gets a grace while its certificate is
    issued.
    """
    out = []
    for ing in _ingresses(ctx):
        ns, name = meta(ing)
        managed = any(get(ing, "metadata", "annotations", a) for a in CERT_MANAGER_ANNOTATIONS)
        broken = []
        for tls in get(ing, "spec", "tls", default=[]) or []:
            secret_name = tls.get("secretName")
            if not secret_name:
                continue  # no secret: the controller's default certificate, on purpose
            secret = ix.find(ctx.snapshot, "secrets", ns, str(secret_name))
            problem = _tls_problem(secret)
            if problem is None:
                continue
            if secret is None and managed and younger_than(ctx, ing, CERT_MANAGER_GRACE_SECONDS):
                continue  # cert-manager is still issuing it
            if secret is None and managed:
                problem += " (cert-manager has not issued it: see its Certificate and Order)"
            broken.append({"secret": secret_name, "hosts": tls.get("hosts") or [],
                           "problem": problem, "exists": secret is not None})
        if not broken:
            continue
        first = broken[0]
        more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
        refs = [{"kind": "Secret", "namespace": ns, "name": b["secret"]} for b in broken
                if b["exists"]]
        out.append(ctx.finding(
            "ingress-tls-secret-missing", "warning", "Ingress", ns, name,
            f"ingress {ns}/{name} serves {', '.join(first['hosts']) or 'its hosts'} with TLS "
            f"secret {first['secret']}, which {first['problem']}: clients get the controller's "
            f"default certificate{more}", "ingress-tls-secret-missing",
            {"broken_tls": broken, "cert_manager": managed,
             **({"cause_ref": refs} if refs else {})}))
    return out


def _tls_users(ctx: CheckContext) -> dict[tuple[str | None, str], list[dict[str, Any]]]:
    out: dict[tuple[str | None, str], list[dict[str, Any]]] = defaultdict(list)
    for ing in _ingresses(ctx):
        ns, name = meta(ing)
        for tls in get(ing, "spec", "tls", default=[]) or []:
            if tls.get("secretName"):
                out[(ns, str(tls["secretName"]))].append(
                    {"ingress": name, "hosts": tls.get("hosts") or []})
    return out


@check("ingress-tls-expiring", "Ingress certificates are not about to expire",
       reads=("ingresses", "secrets"))
def ingress_tls_expiring(ctx: CheckContext) -> list[Finding]:
    """Certificates of Ingress TLS secrets that expire soon, have expired or are not yet valid.

    Warning within the environment's ``cert_expiry_days`` (default 14); critical within 3
    days, once expired, or while not yet valid. One finding per Secret, naming the Ingresses
    and hosts that serve it.
    """
    now: datetime = ctx.snapshot.now
    out = []
    for (ns, secret_name), users in sorted(_tls_users(ctx).items(), key=lambda kv: str(kv[0])):
        secret = ix.find(ctx.snapshot, "secrets", ns, secret_name)
        cert = get(secret, "certificates", "tls.crt") if secret is not None else None
        if not isinstance(cert, Mapping):
            continue
        not_after = parse_time(cert.get("not_after"))
        not_before = parse_time(cert.get("not_before"))
        if not_after is None:
            continue
        days = (not_after - now).total_seconds() / 86400
        window = ctx.thresholds(ns).cert_expiry_days
        severity: Severity
        if not_before is not None and not_before > now:
            severity, state = "critical", f"is not valid before {not_before.isoformat()}"
        elif days < 0:
            severity, state = "critical", f"expired {-days:.1f} days ago ({not_after.isoformat()})"
        elif days < window:
            severity = "critical" if days < CRITICAL_DAYS else "warning"
            state = f"expires in {days:.1f} days ({not_after.isoformat()})"
        else:
            continue
        hosts = sorted({h for u in users for h in u["hosts"]})
        ingresses = sorted({u["ingress"] for u in users})
        out.append(ctx.finding(
            "ingress-tls-expiring", severity, "Secret", ns, secret_name,
            f"TLS certificate in secret {ns}/{secret_name} (served for "
            f"{', '.join(hosts) or 'ingress ' + ', '.join(ingresses)}) {state}",
            "ingress-tls-expiring",
            {"not_after": cert.get("not_after"), "not_before": cert.get("not_before"),
             "days_left": round(days, 2), "subject_cn": cert.get("subject_cn"),
             "dns_names": cert.get("dns_names"), "ingresses": ingresses, "hosts": hosts,
             "warning_days": window, "critical_days": CRITICAL_DAYS}))
    return out


@check("ingress-host-conflict", "No two Ingresses claim the same host and path",
       reads=("ingresses",))
def ingress_host_conflict(ctx: CheckContext) -> list[Finding]:
    """Host + path (or the default backend) claimed by Ingresses of one class, any namespace.

    The controller merges them and one silently wins. The finding is on the newest Ingress
    (most likely the one that introduced the clash), naming the others. Canary Ingresses
    (``nginx.ingress.kubernetes.io/canary``) duplicate a route on purpose and are skipped.
    """
    claims: dict[tuple[str, str, str], set[tuple[str | None, str]]] = defaultdict(set)
    by_key: dict[tuple[str | None, str], Obj] = {}
    for ing in ctx.snapshot.get("ingresses"):  # every namespace: the controller merges them all
        if not ix.live(ing) or get(ing, "metadata", "annotations", CANARY_ANNOTATION) == "true":
            continue
        key = meta(ing)
        by_key[key] = ing
        cls = ingress_class(ing)[0] or "(default)"
        if get(ing, "spec", "defaultBackend"):
            claims[(cls, "*", DEFAULT_BACKEND)].add(key)
        for rule in get(ing, "spec", "rules", default=[]) or []:
            for path in get(rule, "http", "paths", default=[]) or []:
                claims[(cls, str(rule.get("host") or "*"), str(path.get("path") or "/"))].add(key)
    clashes: dict[tuple[str | None, str], list[dict[str, Any]]] = defaultdict(list)
    for (cls, host, path), owners in claims.items():
        if len(owners) < 2:
            continue
        ordered = sorted(owners, key=lambda k: (
            str(get(by_key[k], "metadata", "creationTimestamp") or ""), str(k[0]), k[1]))
        newest = ordered[-1]
        clashes[newest].append({"class": cls, "host": host, "path": path,
                                "also_claimed_by": [f"{ns}/{n}" for ns, n in ordered[:-1]]})
    out = []
    for (ns, name), found in sorted(clashes.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if not ctx.in_scope(ns):
            continue
        found.sort(key=lambda c: (c["host"], c["path"]))
        first = found[0]
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        route = ("the default backend" if first["path"] == DEFAULT_BACKEND
                 else f"{first['host']}{first['path']}")
        out.append(ctx.finding(
            "ingress-host-conflict", "warning", "Ingress", ns, name,
            f"ingress {ns}/{name} claims {route} (class "
            f"{first['class']}), already claimed by {', '.join(first['also_claimed_by'])}: "
            f"the controller serves only one of them{more}", "ingress-host-conflict",
            {"conflicts": found}))
    return out


def host_covered(host: str, names: list[str]) -> bool:
    """Whether a certificate name list covers a host (RFC 6125: ``*`` is one left-most label)."""
    host = host.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


@check("ingress-tls-host-mismatch", "Ingress certificates cover their hosts",
       reads=("ingresses", "secrets"))
def ingress_tls_host_mismatch(ctx: CheckContext) -> list[Finding]:
    """TLS hosts of an Ingress that its Secret's certificate does not name.

    Clients reject the connection (name mismatch) although the certificate is valid: a host
    added to the Ingress but not to the certificate, a wildcard used one level too deep.
    Names come from the certificate's subjectAltNames (its CN only when it has none).
    """
    out = []
    for ing in _ingresses(ctx):
        ns, name = meta(ing)
        uncovered = []
        for tls in get(ing, "spec", "tls", default=[]) or []:
            secret_name = tls.get("secretName")
            secret = ix.find(ctx.snapshot, "secrets", ns, str(secret_name)) if secret_name \
                else None
            cert = get(secret, "certificates", "tls.crt") if secret is not None else None
            if not isinstance(cert, Mapping) or cert.get("error"):
                continue  # missing or unusable: ingress-tls-secret-missing's
            names = list(cert.get("dns_names") or []) or (
                [str(cert["subject_cn"])] if cert.get("subject_cn") else [])
            missed = [h for h in tls.get("hosts") or [] if not host_covered(str(h), names)]
            if missed:
                uncovered.append({"secret": secret_name, "hosts": missed, "names": names})
        if not uncovered:
            continue
        first = uncovered[0]
        out.append(ctx.finding(
            "ingress-tls-host-mismatch", "warning", "Ingress", ns, name,
            f"ingress {ns}/{name} serves {', '.join(first['hosts'])} with the certificate of "
            f"secret {first['secret']}, which covers only {', '.join(first['names']) or 'no name'}"
            ": clients reject it", "ingress-tls-host-mismatch",
            {"uncovered": uncovered,
             "cause_ref": [{"kind": "Secret", "namespace": ns, "name": u["secret"]}
                           for u in uncovered]}))
    return out
