"""The services of ``k3sops env``: environments and their promotion through GitOps.

- :mod:`~k3sops.services.env.status`: ``env list``, ``env status``, ``env diff``;
- :mod:`~k3sops.services.env.promote`: ``env promote``, ``env approve``, ``env rollback``,
  ``env sync``;
- :mod:`~k3sops.services.env.deploy`: bringing a pushed change to the cluster and verifying it
  with the health gates.

The GitOps repository itself (clone, values, commits) is :mod:`k3sops.services.gitops`; the
pure policy (path between environments, gates, approvals) is :mod:`k3sops.domain.env`.
"""
