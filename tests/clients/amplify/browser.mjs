// Amplify JS v6 in a browser page, bundled by esbuild (tests/clients/node.py). The page that
// loads the bundle sets window.BOOKING_CONFIG; results land in window.bookingResult.
import { Amplify } from "aws-amplify";
import { generateClient } from "aws-amplify/api";

import { bookAndPay, describe } from "./flow.mjs";

const config = window.BOOKING_CONFIG;
const lines = [];
const say = (line) => {
  lines.push(line);
  document.getElementById("log").textContent += `${JSON.stringify(line)}\n`;
};

Amplify.configure({
  API: { GraphQL: { endpoint: config.endpoint, region: "us-east-1", defaultAuthMode: "apiKey", apiKey: config.apiKey } },
});
window.bookingResult = bookAndPay(generateClient(), config, say).then(
  (done) => ({ ok: true, done, lines }),
  (err) => ({ ok: false, error: err instanceof Error ? err.message : describe(err), lines }),
);
