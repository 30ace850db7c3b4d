"""One way every entrypoint ends: success, or a plain-language reason where SageMaker looks for it.

SageMaker shows the first 1024 characters of `output/failure` (training jobs) or `output/message`
(processing jobs) as the job's FailureReason, so the reason comes first and the traceback goes to
the log only. The user's mistakes (`shared.errors.UserError`) are reported as they stand; anything
else is the suite's own fault and says so: "internal error: ...".
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from shared.errors import UserError
from shared.sagemaker.stop import SigtermInterrupts

FAILURE_REASON_LIMIT = 1024
SIGTERM_REASON = ("stopped by SIGTERM before the job finished; nothing partial was published, and"
                  " running the job again starts it afresh (a training job resumes from its last"
                  " checkpoint)")
log = logging.getLogger(__name__)


class JobError(UserError):
    """A job's input or configuration cannot be used; the message says why and what to do."""


class JobInterrupted(BaseException):
    """The job was told to stop (SIGTERM) and stopped cleanly; it can be resumed.

    A BaseException, as KeyboardInterrupt is: the SIGTERM handler raises it wherever the job is,
    and library code that catches `Exception` there (logging does, around every write) must not
    swallow it.
    """

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a terminated process


def write_reason(path: Path | None, reason: str) -> None:
    """Write the failure reason where SageMaker reads it (nowhere for a server: it has none)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = reason.strip() or "the job failed without a message"
    path.write_text(text[:FAILURE_REASON_LIMIT])


def run_job(job: Callable[[], None], failure_file: Path | None) -> int:
    """Run `job`; on any exception write its reason to `failure_file` and return a non-zero code.

    SIGTERM raises JobInterrupted (exit code 143) wherever the job is, unless it defers it.
    """
    if failure_file is not None:
        failure_file.unlink(missing_ok=True)  # a reason left by an earlier, interrupted run is stale
    sigterm = SigtermInterrupts(lambda: JobInterrupted(SIGTERM_REASON)).install()
    try:
        job()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        write_reason(failure_file, "the job was interrupted")
        return 130
    except JobInterrupted as exc:
        log.warning("job stopped: %s", exc)
        write_reason(failure_file, str(exc))
        return exc.exit_code
    except UserError as exc:
        log.error("job failed: %s", exc)
        write_reason(failure_file, str(exc))
        return exc.exit_code
    except Exception as exc:  # a fault of the suite: the traceback goes to the log
        reason = f"internal error: {type(exc).__name__}: {exc}"
        log.error("job failed: %s", reason)
        traceback.print_exc(file=sys.stderr)
        write_reason(failure_file, reason)
        return 1
    finally:
        sigterm.uninstall()
    return 0
