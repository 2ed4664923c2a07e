"""queuectl: a persistent, CLI-driven background job queue for shell commands."""

from queuectl.exceptions import QueueCtlError
from queuectl.models import Job, JobState

__version__ = "0.1.0"

__all__ = ["Job", "JobState", "QueueCtlError", "__version__"]
