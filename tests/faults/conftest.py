"""The fault suite: real servers, real faults, figures printed per case.

Short cases run with the rest of the tests; the long ones are marked
``chaos`` and run with ``make chaos`` (``pytest -m chaos -s``)."""
