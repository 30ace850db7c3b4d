"""The user's mistakes, as the suite's own exception types.

A `UserError` is something the person running the suite can fix (a bad flag, a missing input, a
file that is not what it claims to be); its message is written for them and reaches them as it
stands: SageMaker's failure reason, a 4xx body, a pipeline error line. Any other exception is a
fault of the suite itself, reported as an internal error with its traceback in the log.
"""

from __future__ import annotations


class UserError(Exception):
    """Input or configuration that cannot be used; the message says what to do about it."""

    exit_code = 2


class MissingInputError(UserError):
    """A file or folder the user named (or SageMaker should have provided) is not there."""
