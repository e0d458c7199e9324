"""The data converter every client, worker and replayer uses.

Pydantic's converter round-trips ``date``, ``datetime`` (with zone) and
dataclasses exactly, which the default JSON converter does not do for dates.
Changing it changes how every history in flight is read: treat it as part of
the workflow's determinism contract (tests/test_replay.py guards it).
"""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

DATA_CONVERTER: DataConverter = pydantic_data_converter
