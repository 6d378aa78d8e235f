"""`k3sops serve`: the operations service that runs inside the cluster (issue 14)."""
