// What a tenant's Amplify app does with the booking API: look at an apartment, hold it, watch
// the booking, pay, and see APPROVED arrive over the subscription. Shared by the Node client
// (node.mjs) and the browser page (browser.mjs); every step is reported through `say`.

export const GET_APARTMENT = `query GetApartment($id: ID!) {
  getApartment(id: $id) { id apartmentStatus }
}`;
export const RESERVE = `mutation Reserve($input: ReserveApartmentInput!) {
  reserveApartment(input: $input) { id bookingStatus amountDue currency }
}`;
export const PAY = `mutation Pay($input: PayBookingInput!) {
  payBooking(input: $input) { id bookingStatus }
}`;
export const ON_STATUS = `subscription OnStatus($id: ID!) {
  onBookingStatusChanged(id: $id) { id bookingStatus }
}`;

const WAIT_MS = 20000;

// Amplify rejects with {data, errors}; keep what a test can read.
export function describe(err) {
  if (err && Array.isArray(err.errors)) {
    return err.errors.map((e) => `${e.errorType ?? ""} ${e.message ?? JSON.stringify(e)}`).join("; ");
  }
  return String(err && err.message ? err.message : JSON.stringify(err));
}

export async function bookAndPay(client, input, say) {
  const apartment = await client.graphql({ query: GET_APARTMENT, variables: { id: input.apartmentId } });
  say({ step: "query", apartmentStatus: apartment.data.getApartment.apartmentStatus });

  const reserved = await client.graphql({
    query: RESERVE,
    variables: {
      input: {
        apartmentId: input.apartmentId,
        userId: input.userId,
        startDate: input.startDate,
        endDate: input.endDate,
      },
    },
  });
  const booking = reserved.data.reserveApartment;
  say({ step: "mutation", bookingId: booking.id, status: booking.bookingStatus });

  const statuses = [];
  await new Promise((resolve, reject) => {
    let paying = false;
    let paid = false;
    let approved = false;
    let subscription;
    // Both must happen: payBooking answered, and APPROVED came over the subscription.
    const finishIfDone = () => {
      if (paid && approved) {
        clearTimeout(timer);
        subscription.unsubscribe();
        resolve();
      }
    };
    const timer = setTimeout(() => {
      subscription?.unsubscribe();
      reject(new Error(`no APPROVED within ${WAIT_MS} ms; saw ${statuses.join(",")}`));
    }, WAIT_MS);
    subscription = client.graphql({ query: ON_STATUS, variables: { id: booking.id } }).subscribe({
      next: ({ data }) => {
        const status = data.onBookingStatusChanged.bookingStatus;
        statuses.push(status);
        say({ step: "subscription", status });
        if (status === "PENDING" && !paying) {
          // The first message says the subscription listens: now the payment cannot be missed.
          paying = true;
          client
            .graphql({
              query: PAY,
              variables: {
                input: {
                  bookingId: booking.id,
                  amount: booking.amountDue,
                  currency: booking.currency,
                  paymentReference: input.paymentReference,
                },
              },
            })
            .then((answer) => {
              say({ step: "pay", status: answer.data.payBooking.bookingStatus });
              paid = true;
              finishIfDone();
            })
            .catch((err) => reject(new Error(`payBooking failed: ${describe(err)}`)));
        }
        if (status === "APPROVED") {
          approved = true;
          finishIfDone();
        }
      },
      error: (err) => {
        clearTimeout(timer);
        reject(new Error(`subscription failed: ${describe(err)}`));
      },
    });
  });
  return { bookingId: booking.id, statuses };
}

// Subscribing to a booking the caller may not see: Amplify must report an error, never data.
export async function subscribeExpectingRefusal(client, bookingId, say) {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no refusal within 20 s")), WAIT_MS);
    const subscription = client.graphql({ query: ON_STATUS, variables: { id: bookingId } }).subscribe({
      next: ({ data }) => {
        clearTimeout(timer);
        subscription.unsubscribe();
        reject(new Error(`data arrived for someone else's booking: ${JSON.stringify(data)}`));
      },
      error: (err) => {
        clearTimeout(timer);
        const reason = describe(err);
        say({ step: "refused", reason });
        resolve(reason);
      },
    });
  });
}
