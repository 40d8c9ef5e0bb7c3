"""Shared test settings: one thread per test worker, as the CI machine has two cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true",
                     help="run the fuzz suite (tests/test_fuzz.py) with thousands of examples instead of CI's few")


def pytest_configure(config):
    # The fuzz suite's budget: a fixed seed and a few dozen examples per property in CI (seconds),
    # thousands with --fuzz-long. Hypothesis is only needed by the suite itself.
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    common = dict(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                  database=None, print_blob=True)
    settings.register_profile("ci", max_examples=30, **common)
    settings.register_profile("long", max_examples=1000, **common)
    settings.load_profile("long" if config.getoption("--fuzz-long") else "ci")
