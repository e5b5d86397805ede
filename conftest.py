"""Top-level pytest configuration.

Hypothesis runs with a fixed profile: no deadline (the first call of a Numba
kernel compiles it) and derandomized examples, so a CI run is reproducible.
"""

import os

from hypothesis import settings

settings.register_profile("refnorm", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("refnorm")


def pytest_configure(config):
    """With pytest-xdist workers (``--numprocesses``, on by default in pyproject.toml), let idle
    OpenMP threads sleep instead of spinning: every worker runs Numba's and PyTorch's OpenMP pools,
    and on a machine with as many workers as cores a spinning pool steals the core another worker
    needs.  Only the waiting policy changes; thread counts, and so every bit, stay the same.  Set
    here, in the controller, before the workers are started: they inherit the environment."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
