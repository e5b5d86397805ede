"""The conformance harness: any backend against the golden corpus.

* :mod:`refnorm.conformance.backends` — the backend protocol and the built-in
  adapters (``refnorm``, ``torch``, ``jax``, ``numpy32``);
* :mod:`refnorm.conformance.harness` — :func:`~refnorm.conformance.harness.check`;
* :mod:`refnorm.conformance.report` — the op x dtype table;
* :mod:`refnorm.conformance.plugin` — the pytest plugin (``--refnorm-backend``);
* :mod:`refnorm.conformance.mutants` — deliberately buggy backends that the
  suite must catch.
"""
