"""Adapters: the only modules that do I/O. They raise k3sops errors, never library ones."""
