"""Retries are declared once, by error type: transient errors are retried, spec and data errors never."""

from __future__ import annotations

import pytest
from prefect.states import Completed, Failed

from schemas.errors import DataError, NotSupportedYet, PumpError, SpecError, TransientError
from tasks.run.steps import load_task, masked, stage_task, transient


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
@pytest.mark.reliability(
    "transient faults",
    "transient storage errors vs spec and data errors in a step",
    "only transient errors are retried; a spec or data error fails at once",
)
def test_onlytransient_errors_are_retried(error: Exception, retried: bool) -> None:
    assert transient(None, None, Failed(data=error)) is retried


def test_a_completed_state_is_not_retried() -> None:
    assert transient(None, None, Completed(data=1)) is False


def test_the_steps_that_touch_storage_declare_retries() -> None:
    for step in (stage_task, load_task):
        assert step.retries == 2 and step.retry_condition_fn is transient


def test_errors_leave_a_step_with_secrets_masked() -> None:
    from schemas import secrets

    secrets.remember("s3cr3t-value")
    err = masked(RuntimeError("could not connect to https://u:s3cr3t-value@host"))
    assert isinstance(err, PumpError)
    assert str(err) == "RuntimeError: could not connect to https://u:***@host"
    data = DataError("nothing secret here")
    assert masked(data) is data
    spec = masked(SpecError("bad", ["x: s3cr3t-value"]))
    assert isinstance(spec, SpecError) and spec.problems == ("x: ***",)
