// The tenant page: plain ES module, no build step. Reads go over GET with
// automatic persisted queries (short, CDN-cacheable URLs); mutations over POST;
// live status over graphql-transport-ws on /graphql.

const $ = (id) => document.getElementById(id);
const DEV_MODE = document.body.dataset.devMode === "true";
const TOKEN_KEY = "booking.token";

const Q_BUILDINGS = `query Buildings { getAllBuildings { items { id name } } }`;
const APARTMENT_FIELDS = `id apartmentNumber apartmentType numberOfRooms apartmentStatus
  availableFrom monthlyRent currency`;
const Q_APARTMENTS = `query Apartments($buildingId: String!) {
  getAllApartmentsPerBuilding(buildingId: $buildingId) { ${APARTMENT_FIELDS} }
}`;
// Apartments free for every night of the chosen stay (in one building, or in all).
const Q_FREE = `query Free($input: SearchApartmentsInput!) {
  searchApartments(input: $input) { items { ${APARTMENT_FIELDS} } nextToken }
}`;
const Q_CALENDAR = `query Calendar($apartmentId: ID!, $from: AWSDate!, $to: AWSDate!) {
  getApartmentCalendar(apartmentId: $apartmentId, from: $from, to: $to) { startDate endDate state }
}`;
// How far the calendar looks ahead of the chosen first night.
const CALENDAR_DAYS = 180;
const BOOKING_FIELDS = `id apartmentId userId bookingStatus amountDue currency holdExpiresAt paidAt
  cancellationReason workflowId holdExtensions startDate endDate`;
const INVOICE_FIELDS = `id periodStart periodEnd dueDate rent lateFee amountDue currency status
  paidAt paymentReference`;
const Q_INVOICES = `query Invoices($bookingId: ID!) {
  getRentInvoices(bookingId: $bookingId) { ${INVOICE_FIELDS} }
}`;
const M_PAY_RENT = `mutation PayRent($input: PayRentInput!) { payRent(input: $input) { ${INVOICE_FIELDS} } }`;
const M_RESERVE = `mutation Reserve($input: ReserveApartmentInput!) {
  reserveApartment(input: $input) { ${BOOKING_FIELDS} }
}`;
const M_PAY = `mutation Pay($input: PayBookingInput!) { payBooking(input: $input) { ${BOOKING_FIELDS} } }`;
const M_CANCEL = `mutation Cancel($id: ID!) { cancelBooking(id: $id) { ${BOOKING_FIELDS} } }`;
const Q_BOOKING = `query Booking($id: ID!) { getBooking(id: $id) { ${BOOKING_FIELDS} } }`;
const M_EXTEND = `mutation Extend($input: ExtendHoldInput!) { extendHold(input: $input) { ${BOOKING_FIELDS} } }`;
const ENTRY_FIELDS = `id apartmentId userId status position offeredBookingId
  offeredBooking { ${BOOKING_FIELDS} }`;
const M_JOIN = `mutation Join($input: JoinWaitlistInput!) { joinWaitlist(input: $input) { ${ENTRY_FIELDS} } }`;
const M_LEAVE = `mutation Leave($id: ID!) { leaveWaitlist(id: $id) { ${ENTRY_FIELDS} } }`;
const S_ENTRY = `subscription Entry($id: ID!) { onWaitlistEntryChanged(id: $id) { ${ENTRY_FIELDS} } }`;
// How much one click of "extend hold" adds (the server caps how often and how long).
const EXTEND_SECONDS = 300;
const S_STATUS = `subscription Status($id: ID!) { onBookingStatusChanged(id: $id) { ${BOOKING_FIELDS} } }`;

const MESSAGES = {
  ApartmentUnavailable: "Sorry, some of these nights were just taken by someone else. Pick other dates or another apartment.",
  ApartmentNotFound: "This apartment no longer exists.",
  BookingExpired: "Your hold expired before the payment arrived; the apartment is free again.",
  PaymentRejected: "The payment was rejected.",
  BookingNotCancellable: "This booking can no longer be cancelled.",
  BookingNotFound: "Booking not found.",
  Unauthorized: "You are not allowed to do that.",
  UnauthorizedException: "Please sign in with a valid token.",
  HoldLimitReached: "You already hold as many apartments as allowed; pay for or cancel one first.",
  WaitlistEntryNotFound: "That waiting-list entry no longer exists.",
  LeaseNotChangeable: "The stay's end cannot be moved that way.",
};

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  claims: null,
  buildingId: "",
  apartments: new Map(),
  // Ids of the apartments free for the chosen dates (null: not known, e.g. bad dates).
  freeIds: null,
  calendarApartment: null,
  booking: null,
  socket: null,
  countdownTimer: null,
  expiredShown: false,
  // Set once the server refused an extension: the button stays hidden for this booking.
  extendRefused: null,
  entry: null,
  entrySocket: null,
  invoices: [],
};

class GraphQLFailure extends Error {
  constructor(errors) {
    const first = errors[0] || {};
    super(first.message || "request failed");
    this.errorType = first.errorType || (first.extensions && first.extensions.code) || "Error";
    this.errors = errors;
  }
}

// ------------------------------------------------------------------ UI helpers

function showMessage(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.dataset.kind = kind;
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

function explain(error) {
  if (error instanceof GraphQLFailure) {
    return MESSAGES[error.errorType] || `${error.errorType}: ${error.message}`;
  }
  return `Network problem: ${error.message}`;
}

function money(minor, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 100);
  } catch {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
}

function statusBadge(status) {
  const span = document.createElement("span");
  span.className = `status status-${status}`;
  span.textContent = status;
  return span;
}

function isoDate(d) {
  return d.toISOString().slice(0, 10);
}

// ------------------------------------------------------------------ auth

function decodeClaims(token) {
  const part = token.replace(/^Bearer\s+/i, "").split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function authHeaders() {
  return state.token ? { Authorization: state.token } : {};
}

function setToken(token) {
  const claims = decodeClaims(token);
  if (!claims || !claims.sub) {
    showMessage("That does not look like a JWT (header.payload.signature).", "error");
    return false;
  }
  state.token = token.replace(/^Bearer\s+/i, "");
  state.claims = claims;
  sessionStorage.setItem(TOKEN_KEY, state.token);
  const groups = (claims["cognito:groups"] || []).join(", ") || "no groups";
  $("whoami").textContent = `Signed in as ${claims.sub} (${groups})`;
  $("whoami").dataset.userId = claims.sub;
  $("sign-out").hidden = false;
  return true;
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  state.claims = null;
  $("whoami").textContent = "Not signed in";
  delete $("whoami").dataset.userId;
  $("sign-out").hidden = true;
  closeSocket();
  closeEntrySocket();
}

// ------------------------------------------------------------------ GraphQL over HTTP

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function operationName(query) {
  const match = /^\s*(?:query|mutation|subscription)\s+(\w+)/.exec(query);
  return match ? match[1] : "";
}

async function parse(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    throw new Error(`HTTP ${response.status}`);
  }
  if (body.errors && body.errors.length) throw new GraphQLFailure(body.errors);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return body.data;
}

// Queries: GET with the query's sha256 only (APQ); on PersistedQueryNotFound send
// the query once with its hash so the server registers it. `fresh` revalidates
// with the server (ETag/304) instead of trusting the browser's cached copy.
async function query(text, variables = {}, { fresh = false } = {}) {
  const params = new URLSearchParams();
  params.set("operationName", operationName(text));
  params.set("variables", JSON.stringify(variables));
  const cache = fresh ? "no-cache" : "default";
  if (globalThis.crypto && crypto.subtle) {
    const hash = await sha256Hex(text);
    params.set("extensions", JSON.stringify({ persistedQuery: { version: 1, sha256Hash: hash } }));
    const first = await fetch(`/graphql?${params}`, { headers: authHeaders(), cache });
    const body = await first.clone().json().catch(() => null);
    const missing = body && body.errors && body.errors.some(
      (e) => e.errorType === "PersistedQueryNotFound"
        || (e.extensions && e.extensions.code === "PERSISTED_QUERY_NOT_FOUND"));
    if (!missing) return parse(first);
  }
  params.set("query", text);
  return parse(await fetch(`/graphql?${params}`, { headers: authHeaders(), cache }));
}

async function mutate(text, variables) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ query: text, variables, operationName: operationName(text) }),
  });
  return parse(response);
}

// ------------------------------------------------------------------ subscription

function closeSocket() {
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close(1000);
    state.socket = null;
  }
  $("live").classList.remove("connected");
}

function subscribe(bookingId) {
  closeSocket();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
  const socket = new WebSocket(url, "graphql-transport-ws");
  state.socket = socket;
  socket.onopen = () => {
    socket.send(JSON.stringify({
      type: "connection_init",
      payload: { Authorization: state.token, authorization: state.token },
    }));
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "connection_ack") {
      $("live").classList.add("connected");
      socket.send(JSON.stringify({
        id: bookingId, type: "subscribe",
        payload: { query: S_STATUS, variables: { id: bookingId }, operationName: "Status" },
      }));
    } else if (message.type === "ping") {
      socket.send(JSON.stringify({ type: "pong" }));
    } else if (message.type === "next" && message.id === bookingId) {
      const payload = message.payload || {};
      if (payload.errors && payload.errors.length) {
        showMessage(explain(new GraphQLFailure(payload.errors)), "error");
      } else if (payload.data && payload.data.onBookingStatusChanged) {
        applyBooking(payload.data.onBookingStatusChanged, "live");
      }
    } else if (message.type === "error") {
      showMessage(explain(new GraphQLFailure(message.payload || [])), "error");
    }
  };
  socket.onclose = () => {
    $("live").classList.remove("connected");
    state.socket = null;
    // Reconnect while the booking can still change; catch up on what we missed.
    if (state.booking && state.booking.bookingStatus === "PENDING") {
      setTimeout(() => {
        if (state.booking && state.booking.id === bookingId && !state.socket) {
          refreshBooking().finally(() => subscribe(bookingId));
        }
      }, 1000);
    }
  };
}

// A second socket follows the waiting-list entry (its own lifetime: it outlives bookings).
function closeEntrySocket() {
  if (state.entrySocket) {
    state.entrySocket.onclose = null;
    state.entrySocket.close(1000);
    state.entrySocket = null;
  }
}

function subscribeEntry(entryId) {
  closeEntrySocket();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
  const socket = new WebSocket(url, "graphql-transport-ws");
  state.entrySocket = socket;
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "connection_init", payload: { Authorization: state.token } }));
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "connection_ack") {
      socket.send(JSON.stringify({
        id: entryId, type: "subscribe",
        payload: { query: S_ENTRY, variables: { id: entryId }, operationName: "Entry" },
      }));
    } else if (message.type === "ping") {
      socket.send(JSON.stringify({ type: "pong" }));
    } else if (message.type === "next" && message.payload && message.payload.data) {
      const entry = message.payload.data.onWaitlistEntryChanged;
      if (entry) applyEntry(entry);
    }
  };
  socket.onclose = () => {
    state.entrySocket = null;
    if (state.entry && ["WAITING", "OFFERED"].includes(state.entry.status)) {
      setTimeout(() => {
        if (state.entry && state.entry.id === entryId && !state.entrySocket) subscribeEntry(entryId);
      }, 1000);
    }
  };
}

// ------------------------------------------------------------------ catalogue

async function loadBuildings() {
  const select = $("building-select");
  try {
    const data = await query(Q_BUILDINGS);
    const result = data.getAllBuildings;
    const items = Array.isArray(result) ? result : (result && result.items) || [];
    select.replaceChildren(...items.map((b) => new Option(b.name || b.id, b.id)));
    select.hidden = items.length === 0;
    if (!state.buildingId && items.length) {
      state.buildingId = items[0].id;
      $("building-id").value = state.buildingId;
    }
  } catch (error) {
    // The building list is a convenience; the id field still works.
    select.hidden = true;
    if (error instanceof GraphQLFailure && error.errorType === "UnauthorizedException") throw error;
  }
}

function stayDates() {
  return { startDate: $("start-date").value, endDate: $("end-date").value };
}

async function freeFor(input, { fresh = false } = {}) {
  const data = await query(Q_FREE, { input: { ...stayDates(), limit: 100, ...input } }, { fresh });
  return data.searchApartments.items;
}

async function loadApartments({ fresh = false } = {}) {
  if (!state.buildingId || !state.token) return;
  const data = await query(Q_APARTMENTS, { buildingId: state.buildingId }, { fresh });
  try {
    const free = await freeFor({ buildingId: state.buildingId }, { fresh });
    state.freeIds = new Set(free.map((a) => a.id));
  } catch (error) {
    // Dates the service refuses (in the past, moving out before moving in): say why.
    state.freeIds = null;
    if (error instanceof GraphQLFailure && error.errorType === "ValidationError") {
      showMessage(`Your dates: ${error.message}`, "error");
    } else {
      throw error;
    }
  }
  renderApartments(data.getAllApartmentsPerBuilding || []);
  if (state.calendarApartment) await showCalendar(state.calendarApartment, { fresh });
}

async function searchEverywhere() {
  clearMessage();
  try {
    const free = await freeFor({}, { fresh: true });
    state.freeIds = new Set(free.map((a) => a.id));
    renderApartments(free);
    if (!free.length) showMessage("Nothing is free for these dates; try others.", "info");
  } catch (error) {
    showMessage(explain(error), "error");
  }
}

function addDays(day, days) {
  const d = new Date(`${day}T00:00:00Z`);
  return isoDate(new Date(d.getTime() + days * 86400000));
}

async function showCalendar(apartmentId, { fresh = false } = {}) {
  const from = $("start-date").value || isoDate(new Date());
  const to = addDays(from, CALENDAR_DAYS);
  let ranges;
  try {
    const data = await query(Q_CALENDAR, { apartmentId, from, to }, { fresh });
    ranges = data.getApartmentCalendar;
  } catch (error) {
    showMessage(explain(error), "error");
    return;
  }
  state.calendarApartment = apartmentId;
  const apartment = state.apartments.get(apartmentId);
  $("calendar-apartment").textContent = apartment ? apartment.apartmentNumber : apartmentId;
  $("calendar-from").textContent = from;
  $("calendar-to").textContent = to;
  const items = ranges.map((range) => {
    const item = document.createElement("li");
    item.dataset.state = range.state;
    item.dataset.start = range.startDate;
    item.dataset.end = range.endDate;
    const when = document.createElement("span");
    when.textContent = `${range.startDate} to ${range.endDate}`;
    item.append(statusBadge(range.state), when);
    if (range.state === "FREE") {
      item.title = "Use these dates";
      item.addEventListener("click", () => pickDates(range.startDate, range.endDate));
    }
    return item;
  });
  $("calendar-ranges").replaceChildren(...items);
  $("calendar").hidden = false;
}

// A free range picked on the calendar: stay from its first night, a month at most.
function pickDates(start, end) {
  const monthLater = addDays(start, 30);
  $("start-date").value = start;
  $("end-date").value = end < monthLater ? end : monthLater;
  loadApartments({ fresh: true }).catch((error) => showMessage(explain(error), "error"));
}

function textCell(text) {
  const cell = document.createElement("td");
  cell.textContent = text;
  return cell;
}

function renderApartments(apartments) {
  const body = $("apartments").querySelector("tbody");
  state.apartments = new Map(apartments.map((a) => [a.id, a]));
  const rows = apartments.map((apartment) => {
    const row = document.createElement("tr");
    row.dataset.apartmentId = apartment.id;
    row.dataset.status = apartment.apartmentStatus;
    const known = state.freeIds !== null;
    const free = known && state.freeIds.has(apartment.id);
    row.dataset.free = known ? String(free) : "unknown";
    const cells = [
      apartment.apartmentNumber,
      apartment.apartmentType,
      String(apartment.numberOfRooms),
      money(apartment.monthlyRent, apartment.currency),
    ].map(textCell);
    const status = document.createElement("td");
    status.className = "apartment-status";
    status.append(statusBadge(apartment.apartmentStatus));
    const from = textCell(apartment.availableFrom || "not bookable");
    from.className = "available-from";
    const dates = document.createElement("td");
    dates.className = "stay-state";
    // Taken: some night of the chosen stay is held or booked (the calendar says which).
    if (known) dates.append(statusBadge(free ? "FREE" : "TAKEN"));
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.apartmentId = apartment.id;
    if (free) {
      button.textContent = "Reserve";
      button.className = "reserve";
      button.disabled = Boolean(activeHold());
      button.addEventListener("click", () => reserve(apartment.id));
    } else {
      // Some of the nights are taken: wait for them instead; when they are released, the
      // first in line whose whole stay is then free is offered it.
      button.textContent = "Join the waiting list";
      button.className = "join-waitlist";
      const mine = state.entry && state.entry.apartmentId === apartment.id
        && ["WAITING", "OFFERED"].includes(state.entry.status);
      button.disabled = Boolean(mine || !known);
      button.addEventListener("click", () => joinWaitlist(apartment.id));
    }
    const calendar = document.createElement("button");
    calendar.type = "button";
    calendar.className = "secondary show-calendar";
    calendar.textContent = "Calendar";
    calendar.dataset.apartmentId = apartment.id;
    calendar.addEventListener("click", () => showCalendar(apartment.id, { fresh: true }));
    action.append(button, " ", calendar);
    row.append(...cells, status, from, dates, action);
    return row;
  });
  body.replaceChildren(...rows);
  $("apartments-empty").hidden = apartments.length > 0;
}

// ------------------------------------------------------------------ booking

function activeHold() {
  return state.booking && state.booking.bookingStatus === "PENDING" ? state.booking : null;
}

async function reserve(apartmentId) {
  if (!state.claims) {
    showMessage("Sign in first.", "error");
    return;
  }
  clearMessage();
  const hold = $("hold-seconds").value;
  const input = {
    apartmentId,
    userId: state.claims.sub,
    startDate: $("start-date").value,
    endDate: $("end-date").value,
    idempotencyKey: crypto.randomUUID ? crypto.randomUUID() : String(Math.random()),
  };
  if (hold) input.holdSeconds = Number(hold);
  document.querySelectorAll("button.reserve").forEach((b) => { b.disabled = true; });
  try {
    const data = await mutate(M_RESERVE, { input });
    state.expiredShown = false;
    applyBooking(data.reserveApartment, "reserve");
    subscribe(data.reserveApartment.id);
    showMessage("Reserved! Pay before the hold runs out to keep it.", "info");
  } catch (error) {
    showMessage(explain(error), "error");
  } finally {
    await loadApartments({ fresh: true }).catch(() => {});
  }
}

async function pay(event) {
  event.preventDefault();
  const booking = state.booking;
  if (!booking) return;
  $("pay").disabled = true;
  try {
    const data = await mutate(M_PAY, {
      input: {
        bookingId: booking.id,
        amount: booking.amountDue,
        currency: booking.currency,
        paymentReference: `web-${booking.id}`,
      },
    });
    applyBooking(data.payBooking, "pay");
    showMessage("Payment received. The apartment is yours!", "success");
  } catch (error) {
    showMessage(explain(error), "error");
    await refreshBooking().catch(() => {});
  } finally {
    await loadApartments({ fresh: true }).catch(() => {});
  }
}

async function cancel() {
  if (!state.booking) return;
  try {
    const data = await mutate(M_CANCEL, { id: state.booking.id });
    applyBooking(data.cancelBooking, "cancel");
    showMessage("Booking cancelled; the apartment is free again.", "info");
  } catch (error) {
    showMessage(explain(error), "error");
  } finally {
    await loadApartments({ fresh: true }).catch(() => {});
  }
}

async function extendHold() {
  const booking = activeHold();
  if (!booking) return;
  $("extend-hold").disabled = true;
  try {
    const data = await mutate(M_EXTEND, { input: { bookingId: booking.id, seconds: EXTEND_SECONDS } });
    applyBooking(data.extendHold, "extend");
    showMessage(`Hold extended by ${EXTEND_SECONDS / 60} minutes.`, "info");
  } catch (error) {
    if (error instanceof GraphQLFailure && error.errorType === "HoldNotExtendable") {
      state.extendRefused = booking.id;
      showMessage(`This hold cannot be extended any more (${error.message}).`, "error");
    } else {
      showMessage(explain(error), "error");
    }
  } finally {
    renderExtend();
  }
}

function renderExtend() {
  const booking = activeHold();
  const button = $("extend-hold");
  const open = booking && booking.holdExpiresAt && Date.parse(booking.holdExpiresAt) > Date.now();
  button.hidden = !open || state.extendRefused === (booking && booking.id);
  button.disabled = false;
}

async function joinWaitlist(apartmentId) {
  if (!state.claims) {
    showMessage("Sign in first.", "error");
    return;
  }
  clearMessage();
  try {
    const data = await mutate(M_JOIN, {
      input: {
        apartmentId,
        userId: state.claims.sub,
        startDate: $("start-date").value,
        endDate: $("end-date").value,
      },
    });
    applyEntry(data.joinWaitlist);
    subscribeEntry(data.joinWaitlist.id);
    showMessage("You are on the waiting list; you will be offered these nights when they are free.", "info");
  } catch (error) {
    showMessage(explain(error), "error");
  } finally {
    await loadApartments({ fresh: true }).catch(() => {});
  }
}

async function leaveWaitlist() {
  if (!state.entry) return;
  try {
    const data = await mutate(M_LEAVE, { id: state.entry.id });
    applyEntry(data.leaveWaitlist);
    showMessage("You left the waiting list.", "info");
  } catch (error) {
    showMessage(explain(error), "error");
  } finally {
    await loadApartments({ fresh: true }).catch(() => {});
  }
}

function applyEntry(entry) {
  const previous = state.entry;
  state.entry = entry;
  $("waitlist").hidden = false;
  $("entry-apartment").textContent = entry.apartmentId;
  const status = $("entry-status");
  status.textContent = entry.status;
  status.className = `status status-${entry.status}`;
  status.dataset.status = entry.status;
  $("entry-position").textContent = entry.position == null ? "\u2014" : String(entry.position);
  $("leave-waitlist").hidden = !["WAITING", "OFFERED"].includes(entry.status);
  const offer = entry.offeredBooking;
  const newOffer = entry.status === "OFFERED" && offer
    && (!previous || previous.status !== "OFFERED");
  if (newOffer) {
    // The offer is a hold in our name: show it as our booking, with its pay form.
    state.expiredShown = false;
    applyBooking(offer, "offer");
    subscribe(offer.id);
    showMessage("Good news: the apartment is offered to you. Pay before the offer runs out.", "success");
  }
  if (!["WAITING", "OFFERED"].includes(entry.status)) closeEntrySocket();
}

async function refreshBooking() {
  if (!state.booking) return;
  const data = await query(Q_BOOKING, { id: state.booking.id }, { fresh: true });
  if (data.getBooking) applyBooking(data.getBooking, "refresh");
}

function applyBooking(booking, source) {
  const previous = state.booking;
  state.booking = { ...(previous && previous.id === booking.id ? previous : {}), ...booking };
  const current = state.booking;
  $("booking").hidden = false;
  $("booking-id").textContent = current.id;
  $("booking-apartment").textContent = current.apartmentId;
  const status = $("booking-status");
  status.textContent = current.bookingStatus;
  status.className = `status status-${current.bookingStatus}`;
  status.dataset.status = current.bookingStatus;
  $("booking-amount").textContent = money(current.amountDue, current.currency);
  const pending = current.bookingStatus === "PENDING";
  $("pay-form").hidden = !pending;
  $("pay").disabled = !pending;
  // Only a hold can be cancelled (cancelBooking answers BookingNotCancellable once paid).
  $("cancel").hidden = !pending;
  $("booking-extensions").textContent = String(current.holdExtensions || 0);
  renderExtend();
  startCountdown();
  const changed = !previous || previous.id !== current.id
    || previous.bookingStatus !== current.bookingStatus;
  if (changed && source === "live") {
    if (current.bookingStatus === "CANCELLED" && current.cancellationReason === "EXPIRED") {
      announceExpiry();
    } else if (current.bookingStatus === "APPROVED") {
      showMessage("Payment received. The apartment is yours!", "success");
    }
    loadApartments({ fresh: true }).catch(() => {});
  }
  if (current.bookingStatus !== "PENDING" && source !== "reserve") closeSocketLater();
  if (changed && current.bookingStatus === "APPROVED") loadInvoices().catch(() => {});
  if (current.bookingStatus !== "APPROVED") $("rent").hidden = true;
}

// ------------------------------------------------------------------ a lease's rent

function isLease(booking) {
  // A stay past one month is a lease: its later months are invoiced (booking.rent).
  if (!booking.startDate || !booking.endDate) return false;
  const start = new Date(`${booking.startDate}T00:00:00Z`);
  const month = new Date(start);
  month.setUTCMonth(month.getUTCMonth() + 1);
  if (month.getUTCDate() !== start.getUTCDate()) month.setUTCDate(0);
  return Date.parse(`${booking.endDate}T00:00:00Z`) > month.getTime();
}

async function loadInvoices() {
  const booking = state.booking;
  if (!booking || booking.bookingStatus !== "APPROVED" || !isLease(booking)) {
    $("rent").hidden = true;
    return;
  }
  // The lease writes its invoices when its first night comes (at once for a stay from today).
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const data = await query(Q_INVOICES, { bookingId: booking.id }, { fresh: true });
    const invoices = data.getRentInvoices || [];
    if (invoices.length || attempt === 19) {
      renderInvoices(invoices);
      return;
    }
    await new Promise((resolve) => { setTimeout(resolve, 300); });
  }
}

function renderInvoices(invoices) {
  state.invoices = invoices;
  $("rent").hidden = invoices.length === 0;
  const body = $("invoices").querySelector("tbody");
  body.replaceChildren();
  for (const invoice of invoices) {
    const row = document.createElement("tr");
    row.dataset.invoiceId = invoice.id;
    row.dataset.status = invoice.status;
    row.setAttribute("data-testid", "invoice-row");
    row.append(
      textCell(`${invoice.periodStart} \u2013 ${invoice.periodEnd}`),
      textCell(invoice.dueDate),
      textCell(money(invoice.amountDue, invoice.currency)),
    );
    const status = document.createElement("td");
    status.append(statusBadge(invoice.status));
    row.append(status);
    const action = document.createElement("td");
    if (["SCHEDULED", "ISSUED", "OVERDUE"].includes(invoice.status)) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "pay-rent";
      button.textContent = invoice.status === "SCHEDULED" ? "Pay ahead" : "Pay";
      button.addEventListener("click", () => payRent(invoice, button));
      action.append(button);
    }
    row.append(action);
    body.append(row);
  }
}

async function payRent(invoice, button) {
  button.disabled = true;
  try {
    const data = await mutate(M_PAY_RENT, {
      input: {
        invoiceId: invoice.id,
        amount: invoice.amountDue,
        currency: invoice.currency,
        paymentReference: `web-rent-${invoice.id}`,
      },
    });
    const paid = data.payRent;
    renderInvoices(state.invoices.map((i) => (i.id === paid.id ? { ...i, ...paid } : i)));
    showMessage(`Rent for ${invoice.periodStart} paid.`, "success");
  } catch (error) {
    showMessage(explain(error), "error");
    button.disabled = false;
    await loadInvoices().catch(() => {});
  }
}

function closeSocketLater() {
  // Final states never change again (a later cancel is our own mutation).
  setTimeout(() => {
    if (state.booking && state.booking.bookingStatus !== "PENDING") closeSocket();
  }, 500);
}

function announceExpiry() {
  if (state.expiredShown) return;
  state.expiredShown = true;
  showMessage(MESSAGES.BookingExpired, "error");
}

function startCountdown() {
  clearInterval(state.countdownTimer);
  const tick = () => {
    const booking = state.booking;
    const out = $("countdown");
    if (!booking || booking.bookingStatus !== "PENDING" || !booking.holdExpiresAt) {
      out.textContent = booking && booking.bookingStatus === "APPROVED" ? "paid" : "\u2014";
      out.dataset.remaining = "";
      clearInterval(state.countdownTimer);
      return;
    }
    const remaining = Math.max(0, Date.parse(booking.holdExpiresAt) - Date.now());
    const seconds = Math.ceil(remaining / 1000);
    const mm = String(Math.floor(seconds / 60)).padStart(2, "0");
    const ss = String(seconds % 60).padStart(2, "0");
    out.textContent = `${mm}:${ss}`;
    out.dataset.remaining = String(seconds);
    if (remaining === 0) {
      // The server releases the hold on its own durable timer; the subscription
      // brings the final status. Say so now rather than after the round trip.
      out.textContent = "expired";
      $("pay").disabled = true;
      $("extend-hold").hidden = true;
      announceExpiry();
      clearInterval(state.countdownTimer);
      setTimeout(() => { refreshBooking().catch(() => {}); }, 1500);
    }
  };
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

// ------------------------------------------------------------------ wiring

async function showCatalogue() {
  try {
    await loadBuildings();
    await loadApartments();
  } catch (error) {
    showMessage(explain(error), "error");
  }
}

function init() {
  // From tonight (the service's today is UTC's), for a month.
  const start = isoDate(new Date());
  $("start-date").value = start;
  $("end-date").value = addDays(start, 30);
  const url = new URL(location.href);
  state.buildingId = url.searchParams.get("building") || "";
  $("building-id").value = state.buildingId;
  if (url.searchParams.get("hold")) $("hold-seconds").value = url.searchParams.get("hold");
  $("dev-token").hidden = !DEV_MODE;

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (setToken($("token-input").value.trim())) {
      clearMessage();
      showCatalogue();
    }
  });
  $("dev-token").addEventListener("click", async () => {
    const response = await fetch("/dev/token", { method: "POST" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.token) {
      showMessage("The demo token endpoint is not available.", "error");
      return;
    }
    $("token-input").value = body.token;
    if (body.buildingId && !state.buildingId) {
      state.buildingId = body.buildingId;
      $("building-id").value = body.buildingId;
    }
    if (setToken(body.token)) showCatalogue();
  });
  $("sign-out").addEventListener("click", signOut);
  $("building-select").addEventListener("change", (event) => {
    state.buildingId = event.target.value;
    $("building-id").value = state.buildingId;
    loadApartments().catch((error) => showMessage(explain(error), "error"));
  });
  $("search").addEventListener("click", searchEverywhere);
  for (const id of ["start-date", "end-date"]) {
    $(id).addEventListener("change", () => {
      clearMessage();
      loadApartments({ fresh: true }).catch((error) => showMessage(explain(error), "error"));
    });
  }
  $("building-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.buildingId = $("building-id").value.trim();
    loadApartments({ fresh: true }).catch((error) => showMessage(explain(error), "error"));
  });
  $("pay-form").addEventListener("submit", pay);
  $("cancel").addEventListener("click", cancel);
  $("extend-hold").addEventListener("click", extendHold);
  $("leave-waitlist").addEventListener("click", leaveWaitlist);
  // Availability changes under us; a cached copy is fine for up to max-age.
  setInterval(() => {
    if (document.visibilityState === "visible") loadApartments().catch(() => {});
  }, 5000);

  if (state.token && setToken(state.token)) showCatalogue();
  document.body.dataset.ready = "true";
}

init();
