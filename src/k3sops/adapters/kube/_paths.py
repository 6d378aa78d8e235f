"""REST paths of API resources (pure)."""

from __future__ import annotations

# Kinds whose plural is not "lowercase kind + s" (the ones k3sops creates or applies).
_PLURALS = {"endpoints": "endpoints", "ingress": "ingresses", "networkpolicy": "networkpolicies",
            "storageclass": "storageclasses", "ingressclass": "ingressclasses",
            "priorityclass": "priorityclasses", "runtimeclass": "runtimeclasses",
            "podsecuritypolicy": "podsecuritypolicies", "prometheus": "prometheuses"}


def api_path(group_version: str, plural: str, namespace: str | None = None,
             name: str | None = None, sub: str | None = None) -> str:
    """The REST path of a collection or object: ``v1`` is the core group, others under /apis."""
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return (f"{base}{ns}/{plural}" + (f"/{name}" if name else "")
            + (f"/{sub}" if sub else ""))


def plural_of(kind: str) -> str:
    """The resource name of a kind, as the API server's RESTMapper guesses it.

    The exceptions table covers the kinds whose plural is not regular; otherwise the
    lowercased kind plus ``s`` (``ies`` after a consonant and ``y``, ``es`` after ``s``).
    """
    low = kind.lower()
    if low in _PLURALS:
        return _PLURALS[low]
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    return low + "s"
