"""queuectl: a persistent, CLI-driven background job queue for shell commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Job", "JobState", "QueueCtlError", "__version__"]

if TYPE_CHECKING:
    from queuectl.exceptions import QueueCtlError
    from queuectl.models import Job, JobState


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562), so that importing any queuectl module, the
    # CLI's entry point first, does not build every model class up front (issue 15).
    if name == "QueueCtlError":
        from queuectl.exceptions import QueueCtlError

        return QueueCtlError
    if name in ("Job", "JobState"):
        from queuectl import models

        return getattr(models, name)
    raise AttributeError(f"module 'queuectl' has no attribute {name!r}")
