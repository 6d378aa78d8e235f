"""Backups that are proven by restore drills: etcd, application data, Longhorn volumes.

The data goes into restic. One module per `backup` command over a shared context and run
engine::

    verify | restore | etcd_restore | schedule   read backups back; schedule the commands
    etcd | app | volume                         make backups (each hands the engine a producer)
    run | repository                            the run engine; the catalogue (list, prune)
    context                                     settings, repository, the one secret helper

A module imports only modules of the rows below its own (import-linter's
``backup-layers`` contract), never a private name of another.
"""
