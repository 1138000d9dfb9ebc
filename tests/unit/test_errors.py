"""The journal stores exceptions: every zart-nb error must survive a pickle round trip."""

from __future__ import annotations

import pickle

import pytest

from zart_nb import errors

PLAIN = [cls for cls in vars(errors).values()
         if isinstance(cls, type) and issubclass(cls, errors.ZartError) and cls is not errors.StepFailed
         and not issubclass(cls, errors.StepFailed)]


@pytest.mark.parametrize("cls", PLAIN, ids=lambda cls: cls.__name__)
def test_error_survives_pickle(cls):
    exc = cls("what went wrong")
    exc.detail = {"run": "q3"}

    back = pickle.loads(pickle.dumps(exc))

    assert type(back) is cls
    assert back.args == ("what went wrong",)
    assert back.detail == {"run": "q3"}


@pytest.mark.parametrize("cls", [errors.StepFailed, errors.StepTimedOut])
def test_step_failed_keeps_step_and_reason(cls):
    exc = cls("step 'fetch' timed out after 60 s", step="fetch", reason="timed_out")

    back = pickle.loads(pickle.dumps(exc))

    assert type(back) is cls
    assert str(back) == "step 'fetch' timed out after 60 s"
    assert (back.step, back.reason) == ("fetch", "timed_out")


def test_signals_escape_except_exception():
    assert not issubclass(errors.Suspend, Exception)
    assert issubclass(errors.StepTimedOut, errors.StepFailed)
    assert issubclass(errors.DuplicateStepName, errors.UsageError)


def test_a_cause_survives_pickling():
    import pickle

    from zart_nb.errors import StepFailed

    error = StepFailed("failed after 3 attempts", step="s", reason="retries_exhausted")
    error.__cause__ = ValueError("last")
    back = pickle.loads(pickle.dumps(error))

    assert type(back.__cause__) is ValueError and str(back.__cause__) == "last"
    assert (back.step, back.reason) == ("s", "retries_exhausted")
