"""`python -m k3sops`."""

from k3sops.cli.app import main

main()
