"""What each job transition is called, how loud it is, and its colour: one table.

The worker logs a transition as a sentence (``plain``), as an aligned coloured row
(``rich``) and as an object with an ``action`` field (``json``); the tables of
``list``, ``show`` and ``status --watch`` colour states and attempt outcomes the
same way. All of them read this table, so a new transition or a changed word is
one edit here (the way procrastinate keeps one ``action`` per job event).

It also says how an attempt is numbered for people: the attempt number is the row
number of the job's history (``show``, ``logs --attempt K``, ``$QUEUECTL_ATTEMPT``):
every run of the command is one attempt. Runs that did not count against
``max_retries`` (interrupted by a forced stop) make it differ from the job's
``attempts`` field, which counts only the runs charged to its retry budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from queuectl.models import JobState, Outcome


@dataclass(frozen=True, slots=True)
class Transition:
    #: The ``action`` field of ``--log-format json``.
    action: str
    #: The level of the worker's log line (``-q`` hides what is below WARNING).
    level: int
    #: The word of the coloured log's outcome column.
    word: str
    #: Its rich style, also used for the matching states and outcomes in tables.
    style: str
    #: What the transition means for the job, where its name alone does not say it.
    note: str = ""


CLAIMED = Transition("job_claimed", logging.INFO, "claimed", "yellow")
COMPLETED = Transition("job_completed", logging.INFO, "completed", "green")
FAILED = Transition("job_failed", logging.WARNING, "failed", "magenta")
DEAD = Transition("job_dead", logging.ERROR, "dead", "bold red")
RECOVERED = Transition(
    "job_recovered", logging.WARNING, "recovered", "dark_orange", "counts as a failed attempt"
)
INTERRUPTED = Transition(
    "job_interrupted",
    logging.WARNING,
    "interrupted",
    "dark_orange",
    "back to pending; attempt not counted",
)
LOST = Transition(
    "job_lost",
    logging.WARNING,
    "lease lost",
    "red",
    "another worker took it over; result discarded",
)

BY_ACTION = {t.action: t for t in (CLAIMED, COMPLETED, FAILED, DEAD, RECOVERED, INTERRUPTED, LOST)}

#: The colour of each job state in tables: the colour of the transition into it.
STATE_STYLES = {
    JobState.PENDING: "cyan",
    JobState.PROCESSING: CLAIMED.style,
    JobState.COMPLETED: COMPLETED.style,
    JobState.FAILED: FAILED.style,
    JobState.DEAD: DEAD.style,
}

#: How an attempt in a job's history ended -> the transition the worker logged for it.
BY_OUTCOME = {
    Outcome.COMPLETED: COMPLETED,
    Outcome.FAILED: FAILED,
    Outcome.TIMED_OUT: FAILED,
    Outcome.SPAWN_FAILED: FAILED,
    Outcome.LOST: RECOVERED,
    Outcome.INTERRUPTED: INTERRUPTED,
}


def attempt_label(attempt: int, counted: int, max_retries: int) -> str:
    """``2/3`` (attempt 2 of at most 3), or ``2 (1/3 counted)`` once runs went uncounted.

    ``attempt`` is the history row number, ``counted`` the job's ``attempts`` field
    (runs charged to the retry budget, this one included while it runs).
    """
    total = max_retries + 1
    if attempt == counted:
        return f"{attempt}/{total}"
    return f"{attempt} ({counted}/{total} counted)"
