"""Retries are declared once, by error type: transient errors are retried, spec and data errors never."""

from __future__ import annotations

import pytest
from prefect.states import Completed, Failed

from flows.pump import _transient, load_task, stage_task
from schemas.errors import DataError, NotSupportedYet, SpecError, TransientError


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TransientError("s3 said SlowDown"), True),
        (DataError("gzip bomb"), False),
        (SpecError("bad spec"), False),
        (NotSupportedYet("http sink"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_only_transient_errors_are_retried(error: Exception, retried: bool) -> None:
    assert _transient(None, None, Failed(data=error)) is retried


def test_a_completed_state_is_not_retried() -> None:
    assert _transient(None, None, Completed(data=1)) is False


def test_the_steps_that_touch_storage_declare_retries() -> None:
    for step in (stage_task, load_task):
        assert step.retries == 2 and step.retry_condition_fn is _transient
