"""Human (rich) views of the reports, one module per command group.

Each module registers its table renderers in :data:`k3sops.output.render.TABLES` by the
report's type, so the CLI, ``serve`` and the console find them the same way, and a renderer is
imported only when its report is printed as a table. :mod:`.findings` holds the findings table
shared by ``check`` and ``diagnose``, and :data:`.findings.COLOURS`, the one severity palette.
"""

from k3sops.output.tables.findings import COLOURS, Row, findings_table, resource_ref

__all__ = ["COLOURS", "Row", "findings_table", "resource_ref"]
