"""The sliding window: a pure function of token counts."""

from hypothesis import given
from hypothesis import strategies as st

from game.transcript import fit_window


def test_everything_fits():
    assert (
        fit_window(system_tokens=10, exchange_tokens=[5, 5], pending_tokens=5, budget=100, start=0)
        == 0
    )


def test_oldest_pairs_leave_first():
    # 10 + 4*20 + 5 = 95 > 90: the oldest exchange leaves, and only it.
    assert (
        fit_window(system_tokens=10, exchange_tokens=[20] * 4, pending_tokens=5, budget=90, start=0)
        == 1
    )


def test_window_never_moves_back():
    assert (
        fit_window(
            system_tokens=10, exchange_tokens=[20] * 4, pending_tokens=5, budget=1000, start=2
        )
        == 2
    )


def test_headroom_frees_more_than_the_overflow():
    # Over by 5; with 30 tokens of headroom two exchanges (40 tokens) must leave.
    kept = fit_window(
        system_tokens=10,
        exchange_tokens=[20] * 4,
        pending_tokens=5,
        budget=90,
        start=0,
        headroom=30,
    )
    assert kept == 2


def test_all_leave_when_pending_is_huge():
    assert (
        fit_window(
            system_tokens=10, exchange_tokens=[20] * 3, pending_tokens=500, budget=90, start=0
        )
        == 3
    )


@given(
    system=st.integers(0, 50),
    exchanges=st.lists(st.integers(1, 60), max_size=30),
    pending=st.integers(1, 60),
    budget=st.integers(60, 600),
    start=st.integers(0, 35),
    headroom=st.integers(0, 100),
)
def test_budget_respected_and_minimal(system, exchanges, pending, budget, start, headroom):
    kept = fit_window(
        system_tokens=system,
        exchange_tokens=exchanges,
        pending_tokens=pending,
        budget=budget,
        start=start,
        headroom=headroom,
    )
    start = min(start, len(exchanges))
    assert start <= kept <= len(exchanges)
    total = system + sum(exchanges[kept:]) + pending
    if kept < len(exchanges):
        assert total <= budget
    if kept > start:
        # It slid, and it did not drop a pair it did not need to drop.
        before = total + exchanges[kept - 1]
        assert before > max(budget - headroom, 0)
