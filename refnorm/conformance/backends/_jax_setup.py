"""How the backends that run on jax (``jax``, ``keras-jax``) configure it, in one place."""

from __future__ import annotations

import jax


def configure() -> None:
    """Switch on ``jax_enable_x64`` (float64 cases must run in float64; without
    it jax maps float64 to float32) and select the CPU unless the user chose a
    platform (``JAX_PLATFORMS`` is read into ``jax.config.jax_platforms``).
    Called by the importing backend before any jax computation."""
    jax.config.update("jax_enable_x64", True)
    if not jax.config.jax_platforms:  # CPU unless the user chose a platform
        try:
            jax.config.update("jax_platforms", "cpu")
        except Exception:  # pragma: no cover - a backend was already initialized
            pass
