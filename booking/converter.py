"""The data converter every client, worker and replayer uses.

Pydantic's converter round-trips ``date``, ``datetime`` (with zone) and
dataclasses exactly, which the default JSON converter does not do for dates.
Changing it changes how every history in flight is read: treat it as part of
the workflow's determinism contract (tests/test_replay.py guards it).

Payloads are written and read exactly as by ``temporalio.contrib.pydantic``'s
``pydantic_data_converter``; only where its pydantic ``TypeAdapter``\\ s are kept
differs (see :class:`SharedAdapterJSONConverter`).
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

# One cache for the process. Adapters hold no state of any workflow, and the types they are
# built for (our dataclasses, dates) are the same objects inside the workflow sandbox, whose
# modules are all passed through (worker.tuning).
_ADAPTERS: functools._lru_cache_wrapper[TypeAdapter[Any]] = functools.lru_cache(maxsize=1024)(
    TypeAdapter
)


class SharedAdapterJSONConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic's JSON converter with one ``TypeAdapter`` cache per process.

    The SDK builds a new payload converter for every workflow instance, and pydantic's
    converter keeps its adapters per converter: every booking built its own adapter for each
    of its types again (0.2 to 0.6 ms each) and the worker's cache of open workflows held one
    set per workflow.
    """

    def __init__(self) -> None:
        super().__init__()
        self._type_adapter = _ADAPTERS

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._type_adapter = _ADAPTERS


class BookingPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters, with :class:`SharedAdapterJSONConverter` for JSON."""

    def __init__(self) -> None:
        json_converter = SharedAdapterJSONConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER: DataConverter = DataConverter(payload_converter_class=BookingPayloadConverter)
