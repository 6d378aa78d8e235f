"""What of each listed object the snapshot keeps: secrets without their values.

A Secret is reduced at collection time to its metadata, type, key names and — for a TLS
certificate — the certificate's validity and names (public facts, parsed here). No value ever
enters the snapshot, so none can reach a finding, a log or the history. ``managedFields`` are
dropped from every object: no rule reads them and they are often half of an object's size.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Mapping
from datetime import UTC
from typing import Any

CERT_KEYS = ("tls.crt", "ca.crt")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
INTERN_MAX = 128
"""Strings up to this length are shared (keys, names, labels, images, times); longer ones are
mostly unique (annotation blobs, messages) and are kept as they are."""


def certificate_facts(pem_b64: str) -> dict[str, Any]:
    """Validity and names of the first certificate in a base64-encoded PEM bundle."""
    # imported here: most checks meet no TLS secret and the module costs ~40 ms to load
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        pem = base64.b64decode(pem_b64, validate=False)
        cert = x509.load_pem_x509_certificate(pem)
    except (ValueError, binascii.Error, TypeError) as e:
        return {"error": f"not a PEM certificate: {type(e).__name__}"}
    try:
        sans = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {"not_before": cert.not_valid_before_utc.astimezone(UTC).isoformat(),
            "not_after": cert.not_valid_after_utc.astimezone(UTC).isoformat(),
            "subject_cn": str(cn[0].value) if cn else None,
            "dns_names": list(sans)}


def project_secret(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Secret without values: metadata, type, ``keys`` and ``certificate`` facts."""
    data = obj.get("data") or {}
    out: dict[str, Any] = {"apiVersion": obj.get("apiVersion", "v1"), "kind": "Secret",
                           "metadata": strip_meta(obj.get("metadata") or {}),
                           "type": obj.get("type"),
                           "keys": sorted({*data, *(obj.get("stringData") or {})})}
    for key in CERT_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value:
            out.setdefault("certificates", {})[key] = certificate_facts(value)
    return out


def strip_meta(m: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata without managedFields and the last-applied annotation.

    The annotation holds a Secret's values when it was applied with kubectl.
    """
    out = {k: v for k, v in m.items() if k != "managedFields"}
    ann = out.get("annotations")
    if isinstance(ann, Mapping) and LAST_APPLIED in ann:
        out["annotations"] = {k: v for k, v in ann.items() if k != LAST_APPLIED}
    return out


def project(kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects of ``kind`` as the snapshot keeps them."""
    if kind == "secrets":
        return [project_secret(o) for o in items]
    for o in items:
        m = o.get("metadata")
        if isinstance(m, dict) and "managedFields" in m:
            del m["managedFields"]
    return items


def interned(value: Any) -> Any:
    """The same JSON value, its keys and short strings shared with every other object's.

    ``json.loads`` shares keys within one document only; a watch cache decodes each event
    alone, so 30,000 pods would hold 30,000 copies of ``"metadata"``, of their namespace, node
    and image names. Equal values, fewer bytes: no rule can tell the difference.
    """
    t = type(value)
    if t is dict:
        return {sys.intern(k) if type(k) is str else k: interned(v) for k, v in value.items()}
    if t is list:
        return [interned(v) for v in value]
    if t is str and len(value) <= INTERN_MAX:
        return sys.intern(value)
    return value


def for_cache(kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects of ``kind`` as `k3sops serve`'s watch cache keeps them, for as long as it runs.

    What :func:`project` keeps, without the last-applied annotation (no rule or diagnosis reads
    it, and it repeats the whole object as it was applied), strings shared (:func:`interned`).
    tests/unit/test_serve_projection.py runs every rule and diagnosis on every capture both
    ways and requires the same answers.
    """
    out = []
    for o in project(kind, items):
        m = o.get("metadata")
        ann = m.get("annotations") if isinstance(m, dict) else None
        if isinstance(m, dict) and isinstance(ann, dict) and LAST_APPLIED in ann:
            kept = {**o, "metadata": {**m, "annotations": {k: v for k, v in ann.items()
                                                           if k != LAST_APPLIED}}}
        else:
            kept = o
        out.append(interned(kept))
    return out
