"""The local lab: real Kubernetes, etcd, kwok, Prometheus, Alertmanager and PostgreSQL on 127.0.0.1.

Only the CLI (``k3sops lab ...``) and the tests import this package; nothing in services,
adapters or the domain depends on it.
"""
