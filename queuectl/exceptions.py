"""The one exception hierarchy that leaves the library.

Each class's docstring is its default message, so ``raise JobNotFound()`` reads well
and the CLI prints ``str(exc)`` without knowing the class. The CLI maps every
``QueueCtlError`` to exit code 1 in one place (``cli.main``).
"""

from __future__ import annotations


class QueueCtlError(Exception):
    """queuectl failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidJob(QueueCtlError):
    """The job is not valid."""


class ConfigError(QueueCtlError):
    """The configuration is not valid."""


class InvalidOption(QueueCtlError):
    """An option's value is not valid."""


class JobNotFound(QueueCtlError):
    """No such job."""


class DuplicateJob(QueueCtlError):
    """A job with this id already exists."""

    def __init__(
        self,
        message: str | None = None,
        *,
        job_id: str | None = None,
        position: int | None = None,
        key: str | None = None,
        holder: str | None = None,
        earlier: int | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        #: 1-based index of the job in the batch passed to ``enqueue``.
        self.position = position
        #: Set when the job's ``unique_key`` is held, not its id taken: the key, and
        #: the id of the job that holds it.
        self.key = key
        self.holder = holder
        #: Set when the job that has the id (or key) came earlier in the same stream
        #: (``enqueue_stream``): its 1-based position there.
        self.earlier = earlier


class InvalidTransition(QueueCtlError):
    """The job is not in a state that allows this."""


class BackendError(QueueCtlError):
    """The job store cannot be used."""


class DatabaseBusy(BackendError):
    """The database stayed locked by another process for too long."""


class StoreUnreachable(BackendError):
    """The job store cannot be reached for now (a lost connection, a server restarting)."""


class NotAQueueDatabase(BackendError):
    """The file is not a queuectl database."""


class SchemaTooNew(BackendError):
    """The database was written by a newer queuectl."""


class InvalidSchedule(QueueCtlError):
    """The schedule is not valid."""


class ScheduleNotFound(QueueCtlError):
    """No such schedule."""


class DuplicateSchedule(QueueCtlError):
    """A schedule with this name already exists."""


class NoDatabase(BackendError):
    """No database exists there yet (a read-only open never creates one)."""
