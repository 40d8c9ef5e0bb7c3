"""A time budget for training: as many steps as fit, with the learning-rate schedule of that many.

The quickstart promises a quarter of an hour, and the same 2-core CPU has run a training step in
0.19 s on one day and 0.5 s on another. A fixed step count either overruns the budget on a slow
day or leaves most of it unused on a fast one; stopping at the deadline (Lightning's ``max_time``)
would cut the cosine schedule before it anneals. So a budgeted run times its own steps during
warm-up and then fixes its step count:

* the warm-up's second half is timed (the first steps pay for allocation and the data worker's
  start, and by then a process started beside the run, such as the gather CNN, is running too);
* one validation is timed as well, since the run validates every ``eval_every`` steps;
* the count is fixed at the end of warm-up. Until then the schedule does not depend on the total
  (the warm-up is linear, and the cosine's first value is 1 whatever the total), so the run is,
  step for step, the run configured with ``max_steps`` equal to the chosen count: the same
  weights, losses and checkpoints. The count is kept in the checkpoints, so a resumed run keeps it.
"""

from __future__ import annotations

import math

# Share of the budget left over for what the estimate leaves out (checkpoint writes, the final
# save, a machine that slows down later): the quickstart's steps ran about 10 % slower after its
# warm-up than during it (2,049 steps chosen for 450 s took 492 s with 3 %).
MARGIN = 0.08


def steps_within_budget(budget_s: float, elapsed_s: float, steps_done: int, seconds_per_step: float,
                        seconds_per_validation: float, eval_every: int, max_steps: int) -> int:
    """The total step count that ends the run inside ``budget_s``, at most ``max_steps``.

    ``elapsed_s`` seconds have gone on ``steps_done`` steps; each further step costs
    ``seconds_per_step`` and every ``eval_every``-th a validation (0: only the final one).
    Never fewer than ``steps_done``: a budget already spent stops the run at the step it is at.
    """
    if budget_s <= 0 or seconds_per_step <= 0:
        raise ValueError(f"need a positive budget and step time; got {budget_s!r} s and {seconds_per_step!r} s")
    per_step = seconds_per_step + (seconds_per_validation / eval_every if eval_every else 0.0)
    remaining = budget_s * (1.0 - MARGIN) - elapsed_s - seconds_per_validation  # the final validation
    more = max(0, math.floor(remaining / per_step)) if math.isfinite(remaining) else 0
    return int(min(max_steps, steps_done + more))


class StepBudget:
    """Times a run's steps during warm-up and fixes its step count at the end of it; see the module doc.

    ``start_time`` is when the run's budget began (``time.perf_counter()``); a resumed run gives the
    step it starts after and ``now``, the time its loop starts. Call :meth:`step_done` after every
    optimiser step; it returns True at ``warmup_steps``, when :meth:`decide` is due.
    """

    def __init__(self, budget_s: float, warmup_steps: int, start_time: float, start_step: int = 0,
                 now: float | None = None) -> None:
        if warmup_steps < 4:
            raise ValueError(f"a time budget needs warmup_steps >= 4 (its steps are timed); got {warmup_steps}")
        if not 0 <= start_step < warmup_steps:
            raise ValueError(f"a budget is chosen in warm-up: start_step must be in [0, {warmup_steps}); "
                             f"got {start_step}")
        self.budget_s, self.warmup_steps, self.start_time = float(budget_s), int(warmup_steps), float(start_time)
        # Steps after this one are timed; a run resumed in warm-up times its own steps, from ``now``.
        self.window_first = max(warmup_steps // 2, int(start_step))
        self._window_start: float | None = now if self.window_first == start_step else None
        self.seconds_per_step = self.seconds_per_validation = float("nan")

    def step_done(self, step: int, now: float) -> bool:
        if step == self.window_first:
            self._window_start = now
        return step == self.warmup_steps

    def decide(self, window_end: float, now: float, eval_every: int, max_steps: int) -> int:
        """The run's total step count: the timed window ended at ``window_end``, and one validation
        timed from then to ``now``. Sets :attr:`seconds_per_step` and :attr:`seconds_per_validation`."""
        if self._window_start is None:
            raise RuntimeError("the budget's timing window never started")
        self.seconds_per_step = (window_end - self._window_start) / (self.warmup_steps - self.window_first)
        self.seconds_per_validation = now - window_end
        return steps_within_budget(self.budget_s, now - self.start_time, self.warmup_steps, self.seconds_per_step,
                                   self.seconds_per_validation, eval_every, max_steps)  # fmt: skip
