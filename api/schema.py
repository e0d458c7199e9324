"""Query, Mutation and Subscription: the operations of both AppSync schemas plus the contract's.

Who may call what (``@aws_cognito_user_pools`` in the SDL, enforced by
:func:`api.directives.authorize`; an API key may call everything):

- AppSync's own rules, unchanged: createBuilding and createApartment need
  Admins; createApartmentBooking needs Tenants; getAllUserAccounts needs
  Admins or Caretakers; everything else any signed-in user.
- Additions: reserveApartment, payBooking and cancelBooking need Tenants (their
  own bookings, in their own name) or Admins (anyone's); reads of buildings
  and apartments need any signed-in user; getBooking, the booking lists and
  onBookingStatusChanged show a tenant only its own bookings (Admins and
  Caretakers see all).
- The tutorial's addStepFunction and getStepFunctions had no Cognito rule (the
  tutorial used its API key): API keys or Admins.
- User accounts: a signed-in user reads, updates and deletes its own account;
  Admins (and Caretakers, for reads) any.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StreamResult
from strawberry.types import Info
from strawberry.types.graphql import OperationType
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.context import Principal, RequestContext
from api.directives import (
    ADMINS,
    CARETAKERS,
    TENANTS,
    authorize,
    cognito,
    resolver,
    subscription,
)
from api.errors import AppSyncErrors
from api.loaders import Loaders
from api.metrics import OperationMetrics
from api.operations import BookingCommands, ReserveRequest, check_same_booking
from api.pagination import decode_token, encode_token, page_limit
from api.scalars import SCALAR_MAP
from api.types import (
    Apartment,
    ApartmentInput,
    Booking,
    BookingsResult,
    BookingStatus,
    Building,
    BuildingInput,
    BuildingsResult,
    CreateBookingInput,
    Pagination,
    PayBookingInput,
    ReserveApartmentInput,
    StepFunctions,
    StepFunctionsInput,
    UpdateUserInput,
    User,
    UserInput,
    UsersResult,
)
from booking.errors import (
    ApartmentNotFound,
    BookingNotFound,
    BuildingNotFound,
    Unauthorized,
    UserNotFound,
    ValidationError,
)
from booking.settings import Settings
from booking.store import reads
from booking.store.bookings import BookingRow
from workflows.booking import PaymentInput, booking_id_for
from workflows.catalog import (
    ApartmentData,
    BuildingData,
    CatalogRequest,
    UserData,
    UserUpdate,
)

MAX_DEPTH = 10
MAX_TOKENS = 2000
MAX_ALIASES = 30
MAX_ID_LENGTH = 200
DEFAULT_CURRENCY = "EUR"

T = TypeVar("T")


def _given(value: T | None) -> T | None:
    """None for an argument or input field the client left out (UNSET)."""
    return None if value is strawberry.UNSET or value is None else value


def _page(pagination: Pagination | None) -> tuple[int | None, str | None]:
    if not pagination:
        return None, None
    return _given(pagination.limit), _given(pagination.next_token)


def _ctx(info: Info) -> RequestContext:
    context: RequestContext = info.context
    return context


def _commands(info: Info) -> BookingCommands:
    services = _ctx(info).services
    return BookingCommands(services.require_client(), services.settings)


def _check_id(name: str, value: str) -> str:
    if not value.strip() or len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"{name} must be 1 to {MAX_ID_LENGTH} characters")
    return value


def _may_see_booking(principal: Principal, row: BookingRow) -> None:
    if not principal.sees_all_bookings and row.user_id != principal.user_id:
        raise Unauthorized("Not Authorized to access this booking")


async def _booking_row(info: Info, booking_id: str) -> BookingRow | None:
    return await _ctx(info).loaders.reader.run(reads.booking_by_id, booking_id)


async def _fresh_booking(info: Info, booking_id: str) -> Booking:
    row = await _booking_row(info, booking_id)
    if row is None:
        raise BookingNotFound(f"booking {booking_id} does not exist")
    return Booking.from_row(row)


def _may_act_as(info: Info, principal: Principal, user_id: str) -> None:
    if not principal.may_act_for(user_id):
        raise Unauthorized(f"Not Authorized to call {info.field_name} in the name of another user")


@strawberry.type
class Query:
    # -- AppSync (acms) --

    @resolver(directives=[cognito()])
    async def get_user_account(self, info: Info, id: strawberry.ID) -> User:
        principal = authorize(info)
        if not principal.may_read_account(str(id)):
            raise Unauthorized("Not Authorized to read another user's account")
        row = await _ctx(info).loaders.users.load(str(id))
        if row is None:
            raise UserNotFound(f"user {id} does not exist")
        return User.from_row(row)

    @resolver(directives=[cognito(ADMINS, CARETAKERS)])
    async def get_all_user_accounts(
        self, info: Info, pagination: Pagination | None = strawberry.UNSET
    ) -> UsersResult:
        authorize(info, ADMINS, CARETAKERS)
        requested, token_in = _page(pagination)
        limit = page_limit(requested)
        cursor = decode_token("users", token_in)
        after = str(cursor[0]) if cursor else None
        rows = await _ctx(info).loaders.reader.run(
            reads.users_page, limit=limit + 1, after_id=after
        )
        items = rows[:limit]
        token = encode_token("users", [items[-1].id]) if len(rows) > limit else None
        return UsersResult(items=[User.from_row(r) for r in items], next_token=token)

    @resolver(directives=[cognito()])
    async def get_all_bookings_per_apartment(self, info: Info, apartment_id: str) -> list[Booking]:
        principal = authorize(info)
        rows = await _ctx(info).loaders.reader.run(
            reads.bookings_for_apartment,
            apartment_id,
            user_id=None if principal.sees_all_bookings else principal.user_id,
            limit=None,
            after=None,
        )
        return [Booking.from_row(r) for r in rows]

    # -- AppSync (Step Functions tutorial) --

    @strawberry.field
    async def get_step_functions(self, info: Info) -> list[StepFunctions] | None:
        authorize(info, ADMINS)
        rows = await _ctx(info).loaders.reader.run(reads.step_function_executions)
        return [StepFunctions.from_row(r) for r in rows]

    # -- additions --

    @resolver(directives=[cognito()])
    async def get_booking(self, info: Info, id: strawberry.ID) -> Booking | None:
        principal = authorize(info)
        row = await _ctx(info).loaders.bookings.load(str(id))
        if row is None:
            return None
        _may_see_booking(principal, row)
        return Booking.from_row(row)

    @resolver(directives=[cognito()])
    async def get_apartment(self, info: Info, id: strawberry.ID) -> Apartment | None:
        authorize(info)
        row = await _ctx(info).loaders.apartments.load(str(id))
        return None if row is None else Apartment.from_row(row)

    @resolver(directives=[cognito()])
    async def get_all_apartments_per_building(
        self, info: Info, building_id: str
    ) -> list[Apartment]:
        authorize(info)
        rows = await _ctx(info).loaders.building_apartments.load(building_id)
        return [Apartment.from_row(r) for r in rows]

    @resolver(directives=[cognito()], description="Added.")
    async def get_building(self, info: Info, id: strawberry.ID) -> Building | None:
        authorize(info)
        row = await _ctx(info).loaders.buildings.load(str(id))
        return None if row is None else Building.from_row(row)

    @resolver(directives=[cognito()], description="Added: every building, paginated.")
    async def get_all_buildings(
        self, info: Info, pagination: Pagination | None = strawberry.UNSET
    ) -> BuildingsResult:
        authorize(info)
        requested, token_in = _page(pagination)
        limit = page_limit(requested)
        cursor = decode_token("buildings", token_in)
        after = str(cursor[0]) if cursor else None
        rows = await _ctx(info).loaders.reader.run(
            reads.buildings_page, limit=limit + 1, after_id=after
        )
        items = rows[:limit]
        token = encode_token("buildings", [items[-1].id]) if len(rows) > limit else None
        return BuildingsResult(items=[Building.from_row(r) for r in items], next_token=token)

    @resolver(
        directives=[cognito()],
        description="Added: getAllBookingsPerApartment, paginated (oldest first).",
    )
    async def list_bookings_per_apartment(
        self, info: Info, apartment_id: str, pagination: Pagination | None = strawberry.UNSET
    ) -> BookingsResult:
        principal = authorize(info)
        requested, token_in = _page(pagination)
        limit = page_limit(requested)
        cursor = decode_token("bookings:" + apartment_id, token_in)
        after = None
        if cursor:
            try:
                after = (datetime.fromisoformat(str(cursor[0])), str(cursor[1]))
            except (ValueError, IndexError):
                raise ValidationError("nextToken is not valid for this list") from None
        rows = await _ctx(info).loaders.reader.run(
            reads.bookings_for_apartment,
            apartment_id,
            user_id=None if principal.sees_all_bookings else principal.user_id,
            limit=limit + 1,
            after=after,
        )
        items = rows[:limit]
        token = None
        if len(rows) > limit:
            last = items[-1]
            token = encode_token("bookings:" + apartment_id, [last.created_on.isoformat(), last.id])
        return BookingsResult(items=[Booking.from_row(r) for r in items], next_token=token)


async def _written_user(info: Info, user_id: str) -> User:
    """The account as the catalog write left it (read back for the mutation's answer)."""
    rows = await _ctx(info).loaders.reader.run(reads.users_by_ids, [user_id])
    if not rows:
        raise UserNotFound(f"user {user_id} does not exist")
    return User.from_row(rows[0])


@strawberry.type
class Mutation:
    # -- AppSync (acms) --

    @resolver(directives=[cognito()])
    async def create_user_account(self, info: Info, input: UserInput) -> User:
        principal = authorize(info)
        if _given(input.id) is not None:
            user_id = _check_id("id", str(input.id))
            _may_act_as(info, principal, user_id)
        elif principal.user_id is not None:
            user_id = principal.user_id
        else:
            user_id = str(uuid.uuid4())
        await _commands(info).catalog(
            CatalogRequest(
                operation="create_user",
                user=UserData(
                    id=user_id,
                    first_name=input.first_name,
                    last_name=input.last_name,
                    email=input.email,
                    verified=input.verified,
                    user_type=input.user_type.value,
                ),
            )
        )
        return await _written_user(info, user_id)

    @resolver(directives=[cognito()])
    async def update_user_account(self, info: Info, input: UpdateUserInput) -> User:
        principal = authorize(info)
        if _given(input.id) is not None:
            user_id = str(input.id)
        elif principal.user_id is not None:
            user_id = principal.user_id
        else:
            raise ValidationError("input.id is required when calling with an API key")
        _may_act_as(info, principal, user_id)
        await _commands(info).catalog(
            CatalogRequest(
                operation="update_user",
                user_update=UserUpdate(
                    id=user_id,
                    first_name=input.first_name,
                    last_name=input.last_name,
                    verified=input.verified,
                    user_type=input.user_type.value,
                ),
            )
        )
        return await _written_user(info, user_id)

    @resolver(directives=[cognito()])
    async def delete_user_account(self, info: Info, id: strawberry.ID) -> bool:
        principal = authorize(info)
        _may_act_as(info, principal, str(id))
        result = await _commands(info).catalog(
            CatalogRequest(operation="delete_user", user_id=str(id))
        )
        if not result.changed:
            raise UserNotFound(f"user {id} does not exist")
        return True

    @resolver(directives=[cognito(ADMINS)])
    async def create_building(self, info: Info, input: BuildingInput) -> Building:
        authorize(info, ADMINS)
        building_id = str(uuid.uuid4())
        await _commands(info).catalog(
            CatalogRequest(
                operation="create_building",
                building=BuildingData(
                    id=building_id,
                    user_id=input.user_id,
                    name=input.name,
                    street_address=input.address.street_address,
                    postal_code=input.address.postal_code,
                    city=input.address.city,
                    country=input.address.country,
                    number_of_apartments=input.number_of_apartments,
                ),
            )
        )
        rows = await _ctx(info).loaders.reader.run(reads.buildings_by_ids, [building_id])
        if not rows:
            raise BuildingNotFound(f"building {building_id} does not exist")
        return Building.from_row(rows[0])

    @resolver(directives=[cognito(ADMINS)])
    async def create_apartment(
        self, info: Info, input: ApartmentInput | None = strawberry.UNSET
    ) -> Apartment:
        authorize(info, ADMINS)
        if _given(input) is None:
            raise ValidationError("input is required")
        assert input is not None
        monthly_rent = _given(input.monthly_rent)
        apartment_id = str(uuid.uuid4())
        await _commands(info).catalog(
            CatalogRequest(
                operation="create_apartment",
                apartment=ApartmentData(
                    id=apartment_id,
                    apartment_number=input.apartment_number,
                    building_id=input.building_id,
                    number_of_rooms=input.number_of_rooms,
                    kitchen=input.kitchen,
                    apartment_type=input.apartment_type.value,
                    apartment_status=input.apartment_status.value,
                    monthly_rent=monthly_rent if monthly_rent is not None else 0,
                    currency=_given(input.currency) or DEFAULT_CURRENCY,
                    caretaker_id=_given(input.caretaker_id),
                ),
            )
        )
        rows = await _ctx(info).loaders.reader.run(reads.apartments_by_ids, [apartment_id])
        if not rows:
            raise ApartmentNotFound(f"apartment {apartment_id} does not exist")
        return Apartment.from_row(rows[0])

    @resolver(directives=[cognito(TENANTS)])
    async def create_apartment_booking(self, info: Info, input: CreateBookingInput) -> bool:
        principal = authorize(info, TENANTS)
        if input.booking_status is not BookingStatus.PENDING:
            raise ValidationError("bookingStatus must be PENDING: a booking starts as a hold")
        _may_act_as(info, principal, input.user_id)
        await _reserve(
            info,
            ReserveRequest(
                apartment_id=_check_id("apartmentId", input.apartment_id),
                user_id=_check_id("userId", input.user_id),
                start_date=input.start_date,
                end_date=input.end_date,
                hold_seconds=_ctx(info).services.settings.hold_seconds,
                idempotency_key=None,
            ),
        )
        return True

    # -- AppSync (Step Functions tutorial) --

    @strawberry.field
    async def add_step_function(
        self, info: Info, input: StepFunctionsInput
    ) -> StepFunctions | None:
        authorize(info, ADMINS)
        await _commands(info).add_step_function(str(input.id), input.arn)
        row = await _ctx(info).loaders.reader.run(reads.step_function_execution, str(input.id))
        if row is None:
            # The execution was started by someone else under this id without an arn.
            raise ValidationError(f"an execution named {input.id!r} already exists")
        return StepFunctions.from_row(row)

    # -- additions --

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="Returns once the hold is in place: PENDING, apartment RESERVED.",
    )
    async def reserve_apartment(self, info: Info, input: ReserveApartmentInput) -> Booking:
        principal = authorize(info, TENANTS, ADMINS)
        _may_act_as(info, principal, input.user_id)
        key = _given(input.idempotency_key)
        hold_seconds = _given(input.hold_seconds)
        if key is not None and not 1 <= len(key) <= MAX_ID_LENGTH:
            raise ValidationError(f"idempotencyKey must be 1 to {MAX_ID_LENGTH} characters")
        booking_id = await _reserve(
            info,
            ReserveRequest(
                apartment_id=_check_id("apartmentId", input.apartment_id),
                user_id=_check_id("userId", input.user_id),
                start_date=input.start_date,
                end_date=input.end_date,
                hold_seconds=(
                    hold_seconds
                    if hold_seconds is not None
                    else _ctx(info).services.settings.hold_seconds
                ),
                idempotency_key=key,
            ),
        )
        return await _fresh_booking(info, booking_id)

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="APPROVED (apartment OCCUPIED), or BookingExpired / PaymentRejected.",
    )
    async def pay_booking(self, info: Info, input: PayBookingInput) -> Booking:
        principal = authorize(info, TENANTS, ADMINS)
        row = await _booking_row(info, str(input.booking_id))
        if row is None:
            raise BookingNotFound(f"booking {input.booking_id} does not exist")
        _may_act_as(info, principal, row.user_id)
        if input.amount <= 0:
            raise ValidationError("amount must be positive")
        currency = input.currency
        if len(currency) != 3 or not currency.isascii() or not currency.isupper():
            raise ValidationError("currency must be an ISO 4217 code such as EUR")
        reference = input.payment_reference
        if not reference.strip() or len(reference) > MAX_ID_LENGTH:
            raise ValidationError(f"paymentReference must be 1 to {MAX_ID_LENGTH} characters")
        await _commands(info).pay(row, PaymentInput(input.amount, currency, reference))
        return await _fresh_booking(info, row.id)

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="CANCELLED (apartment VACANT), or BookingNotCancellable.",
    )
    async def cancel_booking(self, info: Info, id: strawberry.ID) -> Booking:
        principal = authorize(info, TENANTS, ADMINS)
        row = await _booking_row(info, str(id))
        if row is None:
            raise BookingNotFound(f"booking {id} does not exist")
        _may_act_as(info, principal, row.user_id)
        await _commands(info).cancel(row)
        return await _fresh_booking(info, row.id)


async def _reserve(info: Info, request: ReserveRequest) -> str:
    if request.end_date <= request.start_date:
        raise ValidationError("endDate must be after startDate")
    try:
        return await _commands(info).reserve(request)
    except WorkflowAlreadyStartedError:
        # The execution for this idempotency key has already closed.
        booking_id = booking_id_for(request.user_id, request.idempotency_key)
        row = await _booking_row(info, booking_id)
        if row is None:
            raise ValidationError(
                "idempotencyKey was used by an earlier request that placed no hold; use a new key"
            ) from None
        check_same_booking(request, row.apartment_id, row.start_date, row.end_date)
        return booking_id


@strawberry.type
class Subscription:
    @subscription(
        directives=[cognito()],
        description="The booking now, then again on every status change.",
    )
    async def on_booking_status_changed(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[Booking | None, None]:
        principal = authorize(info)
        context = _ctx(info)
        broadcaster = context.services.broadcaster
        if broadcaster is None:
            raise RuntimeError("live updates are not running (lifespan not started)")
        booking_id = str(id)
        last: tuple[str, object] | None = None
        metrics = context.services.metrics
        metrics.subscriptions.inc()
        try:
            # Subscribe before the first read, so no transition can fall between them.
            with broadcaster.subscribe(booking_id) as queue:
                while True:
                    row = await context.loaders.reader.run(reads.booking_by_id, booking_id)
                    if row is not None:
                        _may_see_booking(principal, row)
                        version = (row.booking_status, row.update_on)
                        if version != last:
                            last = version
                            # Fresh loaders: nested fields (the apartment's status) must not
                            # come from the previous message's cache.
                            context.loaders = Loaders(context.loaders.reader)
                            yield Booking.from_row(row)
                    await queue.get()
                    # Several notices may have queued up; one read answers them all.
                    while not queue.empty():
                        queue.get_nowait()
        finally:
            metrics.subscriptions.dec()


class BookingSchema(strawberry.Schema):
    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> StreamResult:
        # The WebSocket handler passes its connection's one context to every
        # operation; each gets its own copy with fresh DataLoaders, so a later
        # query is not answered from an earlier one's cache and concurrent
        # operations never share loaders.
        if isinstance(context_value, RequestContext):
            context_value = context_value.for_operation()
        return await super().stream(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            operation_extensions=operation_extensions,
            allowed_operation_types=allowed_operation_types,
        )

    def process_errors(self, errors: object, execution_context: object = None) -> None:
        # AppSyncErrors logs the unexpected ones with the request id; domain errors
        # are answers, not incidents, and are not logged as errors.
        return None


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    introspection = settings.introspection if settings is not None else True
    extensions: list[object] = [
        AppSyncErrors,
        OperationMetrics,
        partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
        partial(ParserCache, maxsize=512),
        partial(ValidationCache, maxsize=512),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return BookingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,  # type: ignore[arg-type]
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
