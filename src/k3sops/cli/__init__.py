"""Command-line interface: thin layer that parses, calls a service and renders."""
