"""Time travel: snapshots of a run, and going back to any point of it.

``snapshot``  the whole state of a run at a quiescent point, and back
``store``     the snapshots of one run, their pages shared, within a budget
``recorder``  takes snapshots as a run goes
"""

from .recorder import Recorder
from .snapshot import Snapshot, SnapshotError, capture, restart_order, restore
from .store import DEFAULT_BUDGET, SnapshotStore

__all__ = ["DEFAULT_BUDGET", "Recorder", "Snapshot", "SnapshotError", "SnapshotStore",
           "capture", "restart_order", "restore"]
