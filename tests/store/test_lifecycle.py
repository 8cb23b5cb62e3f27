"""The job lifecycle table (DESIGN.md §5): what may follow what."""

from __future__ import annotations

import itertools

import pytest

from dvmkit.store import TERMINAL_STATES, TRANSITIONS, JobState, can_transition, check_transition

S = JobState


def test_every_state_has_a_row_and_terminal_states_have_no_exit() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert {S.SUCCESS, S.ERROR, S.CANCELLED, S.EXPIRED} == TERMINAL_STATES
    for state in JobState:
        assert state.terminal == (state in TERMINAL_STATES)
        assert (TRANSITIONS[state] == frozenset()) == state.terminal


def test_every_unfinished_job_can_fail_be_cancelled_and_stay() -> None:
    for state in JobState:
        if not state.terminal:
            assert can_transition(state, S.ERROR)
            assert can_transition(state, S.CANCELLED)
            assert can_transition(state, state)  # a partial result, a new invoice


def test_the_paid_path_reaches_success_and_only_through_processing() -> None:
    path = [S.RECEIVED, S.PAYMENT_REQUIRED, S.PAID, S.QUEUED, S.PROCESSING, S.SUCCESS]
    for current, following in itertools.pairwise(path):
        assert can_transition(current, following)
    assert [s for s in JobState if can_transition(s, S.SUCCESS)] == [S.PROCESSING]


def test_paid_and_running_jobs_never_expire() -> None:
    # A paid job is run, or refunded with an error (DESIGN.md §5): no "paid -> expired", and
    # expire_due() skips queued jobs that were paid (see the conformance suite).
    assert [s for s in JobState if can_transition(s, S.EXPIRED)] == [
        S.RECEIVED,
        S.PAYMENT_REQUIRED,
        S.QUEUED,
    ]
    assert not can_transition(S.PAYMENT_REQUIRED, S.PROCESSING)  # never run before payment


def test_check_transition_names_the_bad_move() -> None:
    check_transition({S.QUEUED, S.PROCESSING}, S.ERROR)
    with pytest.raises(ValueError, match="cannot move from processing to expired"):
        check_transition([S.QUEUED, S.PROCESSING], S.EXPIRED)
    with pytest.raises(ValueError, match="no state"):
        check_transition([], S.ERROR)
    with pytest.raises(ValueError, match="is not a valid JobState"):
        check_transition(["nonsense"], S.ERROR)  # type: ignore[list-item]
