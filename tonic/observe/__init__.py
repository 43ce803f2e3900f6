"""What one process tree does to files, observed with fanotify (placeholder doc)."""

from __future__ import annotations

from tonic.observe.activity import Activity
from tonic.observe.observer import ObserveError, Observer, unavailable

__all__ = ["Activity", "ObserveError", "Observer", "unavailable"]
