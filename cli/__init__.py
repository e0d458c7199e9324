"""The ``booking`` command, on top of the house: it may import every other room.

- ``cli.main``: the parser and the short commands (worker, api, migrate, seed, setup,
  doctor, token, bench);
- ``cli.dev``: ``booking dev``, the whole system on one machine (``booking.devstack``).

``python -m cli`` is the same as ``booking``.
"""
