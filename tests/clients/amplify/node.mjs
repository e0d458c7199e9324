// Amplify JS v6 in Node, configured as an AppSync app would be, pointed at the booking API.
//   node node.mjs '<json>'   json: {endpoint, authMode: apiKey|oidc|lambda, apiKey?, token?,
//                                    action: bookAndPay|refusal, ...the flow's input}
// Prints one JSON line per step and {"done": ...} at the end; exits 1 on any failure.
// TLS: the API's CA comes from NODE_EXTRA_CA_CERTS, as a user of `booking dev --tls` sets it.
import WebSocket from "ws";
import { Amplify } from "aws-amplify";
import { generateClient } from "aws-amplify/api";
import { decodeJWT } from "aws-amplify/auth";

import { bookAndPay, describe, subscribeExpectingRefusal } from "./flow.mjs";

// Node 20 has no WebSocket of its own; Amplify uses the global one.
globalThis.WebSocket ??= WebSocket;

const config = JSON.parse(process.argv[2]);
const say = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const graphql = { endpoint: config.endpoint, region: "us-east-1", defaultAuthMode: config.authMode };
if (config.authMode === "apiKey") graphql.apiKey = config.apiKey;
const libraryOptions = {};
if (config.authMode === "oidc" || config.authMode === "userPool") {
  // An OIDC / Cognito app gets its tokens from its identity provider; here, from the test.
  const tokens = { accessToken: decodeJWT(config.token), idToken: decodeJWT(config.token) };
  libraryOptions.Auth = { tokenProvider: { getTokens: async () => tokens } };
}
Amplify.configure({ API: { GraphQL: graphql } }, libraryOptions);
const client =
  config.authMode === "lambda"
    ? generateClient({ authMode: "lambda", authToken: config.token })
    : generateClient();

try {
  const result =
    config.action === "refusal"
      ? await subscribeExpectingRefusal(client, config.bookingId, say)
      : await bookAndPay(client, config, say);
  say({ done: result });
  process.exit(0);
} catch (err) {
  say({ failed: err instanceof Error ? err.message : describe(err) });
  process.exit(1);
}
