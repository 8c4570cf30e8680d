// A page using the client as a package: it must type-check as written, and every line
// marked as an expected error must be one, or tsc fails (the declarations are too loose).
import {
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
  // @ts-expect-error no such state
  const open: PriceState["state"] = "open";
  void open;
}

const sub: Subscription = subscribe(["AAPL", "BRK.B"], show, status, {
  baseUrl: new URL("/", location.href),
  token: async () => sessionStorage.getItem("jwt"),
  renew: async () => (await fetch("/renew", { method: "POST" })).ok,
  credentials: "include",
});
sub.setSymbols(normalizeSymbols(["msft", "aapl"]));
const streamed: string[] | null = sub.symbols;
console.log(streamed, sub.shared, sub.state.lastEventId, SYMBOL_PATTERN.test("RDS-A"));
sub.close();

subscribe(null, (tick) => tick.data["exchange"]); // every symbol; onState is optional

// @ts-expect-error credentials is fetch's mode, not a boolean
subscribe(null, show, status, { credentials: true });
// @ts-expect-error symbols are strings
subscribe([42], show);
// @ts-expect-error the subscription is read-only
sub.symbols = ["AAPL"];
