"""Per-request DataLoaders: a nested field costs one query per request, not one per parent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

from strawberry.dataloader import DataLoader

from api.services import Reader
from booking.store import reads
from booking.store.bookings import BookingRow
from booking.store.reads import ApartmentRow, BuildingRow, UserRow

R = TypeVar("R", UserRow, BuildingRow, ApartmentRow, BookingRow)


def _in_key_order(keys: Sequence[str], rows: list[R], key: Callable[[R], str]) -> list[R | None]:
    by_key = {key(r): r for r in rows}
    return [by_key.get(k) for k in keys]


class Loaders:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader

        async def load_users(ids: list[str]) -> list[UserRow | None]:
            return _in_key_order(ids, await reader.run(reads.users_by_ids, ids), lambda r: r.id)

        async def load_buildings(ids: list[str]) -> list[BuildingRow | None]:
            rows = await reader.run(reads.buildings_by_ids, ids)
            return _in_key_order(ids, rows, lambda r: r.id)

        async def load_apartments(ids: list[str]) -> list[ApartmentRow | None]:
            rows = await reader.run(reads.apartments_by_ids, ids)
            return _in_key_order(ids, rows, lambda r: r.id)

        async def load_building_apartments(ids: list[str]) -> list[list[ApartmentRow]]:
            grouped: dict[str, list[ApartmentRow]] = defaultdict(list)
            for row in await reader.run(reads.apartments_by_building_ids, ids):
                grouped[row.building_id].append(row)
            return [grouped.get(i, []) for i in ids]

        async def load_bookings(ids: list[str]) -> list[BookingRow | None]:
            rows = await reader.run(reads.bookings_by_ids, ids)
            return _in_key_order(ids, rows, lambda r: r.id)

        self.users: DataLoader[str, UserRow | None] = DataLoader(load_users)
        self.buildings: DataLoader[str, BuildingRow | None] = DataLoader(load_buildings)
        self.apartments: DataLoader[str, ApartmentRow | None] = DataLoader(load_apartments)
        self.building_apartments: DataLoader[str, list[ApartmentRow]] = DataLoader(
            load_building_apartments
        )
        self.bookings: DataLoader[str, BookingRow | None] = DataLoader(load_bookings)
