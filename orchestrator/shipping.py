"""What of a project folder is shipped to a cluster (``orch submit``, ``orch sweep --address``).

Ray packs the folder honouring ``.gitignore`` and ``.rayignore``; orch leaves out what a cluster
never needs on top of that.
"""

from __future__ import annotations

__all__ = ["EXCLUDES"]

#: Left out of every shipped project, on top of Ray's own ignore files.
EXCLUDES = (".git", ".venv", ".orch", "mlruns", "mlartifacts", "__pycache__", "*.pyc")
