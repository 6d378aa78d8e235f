"""Diagnosis: the findings of the one engine, followed along the dependency chain to a root.

`k3sops check` judges every object with the registered rules; a diagnosis runs the *same*
rules (:func:`analyse`, every period) and then walks from one object (or an area: the network,
the storage, a namespace, the cluster) along what it depends on (:mod:`k3sops.domain.graph`):
Ingress → Service → pods → Node; Pod → PVC → StorageClass/PV; Deployment → ReplicaSet → pods;
HPA → target and metrics API; webhook → Service. Every finding about an object on the way is
part of the diagnosis, so a diagnosis always contains what `check` says about the object and
its dependencies. The walk ends at root causes: problems not explained by a problem further
down, a reference to an object that does not exist, or — named plainly — a link that could not
be read. ``-o json`` prints :class:`DiagnosisReport`, whose findings use the check schema.

The package, lowest first (import-linter keeps it one-way):

* :mod:`.model`: the report (:class:`ChainStep`, :class:`RootCause`, :class:`DiagnosisReport`)
  and :class:`Diagnosis`, which accumulates it;
* :mod:`.walk`: the engine's findings per object and the walk along links (chains, roots);
* :mod:`.objects`: one object (any kind, a pod, a Deployment) and the pod/rollout helpers;
* :mod:`.node` and :mod:`.areas`: a node; the network, the storage, the whole cluster.
"""

from k3sops.domain.checks.scheduling import parse_failed_scheduling
from k3sops.domain.diagnose.areas import (
    by_severity,
    diagnose_cluster,
    diagnose_network,
    diagnose_storage,
)
from k3sops.domain.diagnose.model import ChainStep, Diagnosis, DiagnosisReport, RootCause
from k3sops.domain.diagnose.node import K3S_ROLE_LABELS, diagnose_node, node_role
from k3sops.domain.diagnose.objects import (
    crashlooping,
    diagnose_deployment,
    diagnose_object,
    diagnose_pod,
    find,
    pods_of_deployment,
    rollout_state,
    scheduling_causes,
    similar,
    unhealthy_pods,
)
from k3sops.domain.diagnose.walk import (
    HEALTHY_SHOWN,
    MAX_DEPTH,
    REFERENCE_CHECKS,
    ROOT_PRIORITY,
    NodeKey,
    analyse,
    context,
)

__all__ = ["HEALTHY_SHOWN", "K3S_ROLE_LABELS", "MAX_DEPTH", "REFERENCE_CHECKS", "ROOT_PRIORITY",
           "ChainStep", "Diagnosis", "DiagnosisReport", "NodeKey", "RootCause", "analyse",
           "by_severity", "context", "crashlooping", "diagnose_cluster", "diagnose_deployment",
           "diagnose_network", "diagnose_node", "diagnose_object", "diagnose_pod",
           "diagnose_storage", "find", "node_role", "parse_failed_scheduling",
           "pods_of_deployment", "rollout_state", "scheduling_causes", "similar",
           "unhealthy_pods"]
