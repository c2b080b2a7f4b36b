import pytest

from aegis_ray.core.models.execution import (
    ACTIVE_STATES,
    ALLOWED_TRANSITIONS,
    PLACED_STATES,
    TERMINAL_STATES,
    ExecutionState,
    can_transition,
    is_terminal,
)

S = ExecutionState


def test_happy_path_is_allowed_step_by_step() -> None:
    path = [S.PENDING, S.SCHEDULED, S.STARTING, S.RUNNING, S.SUCCEEDED]
    assert all(can_transition(a, b) for a, b in zip(path, path[1:], strict=False))


def test_state_values_are_upper_case_names() -> None:
    assert [s.value for s in S] == [s.name for s in S]
    assert can_transition("RUNNING", "TIMED_OUT")


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_never_move(terminal: ExecutionState) -> None:
    assert is_terminal(terminal)
    assert not any(can_transition(terminal, s) for s in S)


@pytest.mark.parametrize("live", [S.SCHEDULED, S.STARTING, S.RUNNING])
def test_lost_attempt_can_go_back_to_pending_for_a_retry(live: ExecutionState) -> None:
    assert can_transition(live, S.PENDING)


def test_no_skipping_ahead_or_finishing_before_running() -> None:
    assert not can_transition(S.PENDING, S.RUNNING)
    assert not can_transition(S.PENDING, S.SUCCEEDED)
    assert not can_transition(S.STARTING, S.SUCCEEDED)
    assert not can_transition(S.PENDING, S.TIMED_OUT)
    assert not can_transition(S.RUNNING, S.RUNNING)


def test_every_state_has_a_transition_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)
    assert not is_terminal(S.RUNNING)


def test_active_states_are_the_unfinished_ones_in_lifecycle_order() -> None:
    assert ACTIVE_STATES == (S.PENDING, S.SCHEDULED, S.STARTING, S.RUNNING)
    assert set(ACTIVE_STATES) | TERMINAL_STATES == set(S)
    assert set(PLACED_STATES) == set(ACTIVE_STATES) - {S.PENDING}
