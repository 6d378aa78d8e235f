"""Output formatters: a registry from format name to renderer."""
