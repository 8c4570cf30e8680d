// A page using the client as a package: it must type-check as written, and every line
// marked as an expected error must be one, or tsc fails (the declarations are too loose).
import {
  type Delivery,
  normalizeDelivery,
  normalizeSymbols,
  type PriceState,
  type PriceTick,
  SYMBOL_PATTERN,
  type Subscription,
  subscribe,
} from "@price-gateway/client";

const rows = new Map<string, string>();

function show(tick: PriceTick): void {
  rows.set(tick.symbol, `${tick.price} at ${tick.timestamp} from ${tick.source}`);
  const exact: string = tick.price; // "189.230000": the digits as published
  // @ts-expect-error prices are exact text, never floats
  const float: number = tick.price;
  void exact;
  void float;
}

function status(state: PriceState): void {
  if (state.state === "reset") console.warn("prices restart:", state.reason, state.detail);
  if (state.state === "reconnecting" && state.retryAt !== undefined) {
    console.info(`retrying in ${state.retryAt - Date.now()} ms after ${state.lastEventId}`);
  }
  // The gateway's effective delivery: a token may impose more than was asked.
  if (state.delivery !== null && state.delivery.delay > 0) {
    console.info(`prices delayed ${state.delivery.delay} s, at most one per ${state.delivery.conflate} ms`);
  }
  // @ts-expect-error null until a stream has opened
  const delay: number = state.delivery.delay;
  void delay;
  // @ts-expect-error no such state
  const open: PriceState["state"] = "open";
  void open;
}

const sub: Subscription = subscribe(["AAPL", "BRK.B"], show, status, {
  baseUrl: new URL("/", location.href),
  token: async () => sessionStorage.getItem("jwt"),
  renew: async () => (await fetch("/renew", { method: "POST" })).ok,
  credentials: "include",
  conflate: 250,
  delay: 0,
});
sub.setSymbols(normalizeSymbols(["msft", "aapl"]));
const streamed: string[] | null = sub.symbols;
console.log(streamed, sub.shared, sub.state.lastEventId, SYMBOL_PATTERN.test("RDS-A"));
sub.setDelivery({ conflate: 1000 }); // the delay stays as it was
const asked: Readonly<Delivery> = sub.requested;
const checked: Delivery = normalizeDelivery({ delay: 900 }, asked);
console.log(asked.conflate, checked.delay);
sub.close();

subscribe(null, (tick) => tick.data["exchange"]); // every symbol; onState is optional

// @ts-expect-error credentials is fetch's mode, not a boolean
subscribe(null, show, status, { credentials: true });
// @ts-expect-error symbols are strings
subscribe([42], show);
// @ts-expect-error the subscription is read-only
sub.symbols = ["AAPL"];
// @ts-expect-error conflate is a number of milliseconds, not text
subscribe(null, show, status, { conflate: "250ms" });
// @ts-expect-error no such delivery field
sub.setDelivery({ throttle: 4 });
// @ts-expect-error what was asked is read-only
sub.requested.conflate = 50;
