"""Top-level pytest configuration.

Hypothesis runs with a fixed profile: no deadline (the first call of a Numba
kernel compiles it) and derandomized examples, so a CI run is reproducible.
"""

from hypothesis import settings

settings.register_profile("refnorm", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("refnorm")
