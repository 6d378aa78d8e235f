"""The ``platform.yaml`` schema: pydantic models of every section, and nothing that reads files.

This is the one part of :mod:`k3sops.config` the domain may import (import-linter holds it to
that): the models and their validators, without the YAML loader, the error formatting or the
starter template.
"""

from k3sops.config.schema.backup import (
    Backup,
    BackupBinaries,
    BackupDrill,
    BackupHook,
    BackupHooks,
    BackupSchedule,
    BackupTarget,
    EtcdAccess,
    VolumeSchedule,
)
from k3sops.config.schema.environment import Environment, Promotion, Thresholds
from k3sops.config.schema.fields import ENVIRONMENT_NAMES, EnvironmentName
from k3sops.config.schema.monitoring import AppMetrics, Endpoint, Monitoring, ServiceRef
from k3sops.config.schema.platform import Ansible, GitOps, Platform, Suppression
from k3sops.config.schema.serve import (
    AlertReceiver,
    Remediation,
    RemediationPolicy,
    RemediationTrigger,
    Serve,
    ServeLease,
    ServeSchedule,
    ServeTls,
)
from k3sops.config.schema.state import State

__all__ = [
    "ENVIRONMENT_NAMES",
    "AlertReceiver",
    "Ansible",
    "AppMetrics",
    "Backup",
    "BackupBinaries",
    "BackupDrill",
    "BackupHook",
    "BackupHooks",
    "BackupSchedule",
    "BackupTarget",
    "Endpoint",
    "Environment",
    "EnvironmentName",
    "EtcdAccess",
    "GitOps",
    "Monitoring",
    "Platform",
    "Promotion",
    "Remediation",
    "RemediationPolicy",
    "RemediationTrigger",
    "Serve",
    "ServeLease",
    "ServeSchedule",
    "ServeTls",
    "ServiceRef",
    "State",
    "Suppression",
    "Thresholds",
    "VolumeSchedule",
]
