"""The exceptions this package raises; each one pickles, so it can cross a process boundary."""

from __future__ import annotations

from airflow.exceptions import AirflowException


class SidecarBatchError(AirflowException):
    """Raised for any failure this package detects; the base of the family."""


class JobDefinitionError(SidecarBatchError):
    """Raised when a job definition cannot be loaded, converted or validated.

    :param problems: one line per problem, each naming the path, the value found and the fix.
    """

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"job definition{where}: {count} {noun}:\n{lines}")

    def __reduce__(self):
        return (type(self), (self.problems, self.source))


class SubmitRequestError(SidecarBatchError):
    """Raised when a SubmitJob request would be refused: bad name, overrides, parameters or size."""


class BatchJobFailedError(SidecarBatchError):
    """Raised when the Batch job ends FAILED; the message says why, container by container."""


class BatchJobTimeoutError(SidecarBatchError):
    """Raised when the job outlives a deadline of the operator; the job is terminated first."""
