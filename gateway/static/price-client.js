// Live prices from the gateway for any page of its origin; one stream shared by all tabs.
//
//   import { subscribe } from "/static/price-client.js";
//   const sub = subscribe(["AAPL", "BRK.B"], (tick) => show(tick), (state) => status(state));
//   sub.setSymbols(["AAPL", "MSFT"]);   // one new stream, resuming after the last id seen
//   sub.setDelivery({ conflate: 1000 }); // at most one tick per symbol a second, no gap
//   sub.close();
//
// tick:  {id, symbol, price, timestamp, source, data}. `price` is the exact text sent
//        ("189.230000"); `data` is the parsed event, extra fields included.
// state: {state, lastEventId, delivery, reason?, detail?, retryAt?, heardAt?, shared}, where
//        state is "connecting" | "live" | "reconnecting" | "reset" | "error" | "unauthorized" |
//        "forbidden" | "closed". A "reset" carries the gateway's reason: the position was
//        lost and prices start again from the latest stored ones. "unauthorized" (no valid
//        token, not renewed) and "forbidden" (a symbol the token does not allow) carry the
//        gateway's detail and are retried slowly. `delivery`: what the gateway applies,
//        {conflate (ms), delay (s)} (see options below); null until a stream has opened.
//
// With authentication on, the gateway takes a JWT from the site's HttpOnly cookie or from
// options.token (sent as Authorization: Bearer, never in the URL); options.renew is
// called when the gateway refuses the token or ends a stream because it expired, and the
// stream then resumes after the last id seen, with no gap.
//
// Tabs share one connection through a SharedWorker (price-worker.js). Where there is
// none (or the page is on another origin than this module), each tab keeps its own,
// with the same behaviour.

import { FeedHub, PROTOCOL } from "./feed-hub.js";
import { SeenIds } from "./feed.js";

export const SYMBOL_PATTERN = /^[A-Z0-9][A-Z0-9.-]{0,15}$/;
const DEFAULT_BASE = new URL("../", import.meta.url); // this file is <gateway>/static/...
const CREDENTIALS = ["same-origin", "include", "omit"]; // fetch's, for the worker's name too
// The gateway's ranges (0 is off): conflate in milliseconds, delay in seconds.
const DELIVERY = { conflate: [50, 60000], delay: [1, 86400] };

/** Upper-cased, de-duplicated, validated symbols; null or [] mean every symbol. */
export function normalizeSymbols(symbols) {
  if (symbols === null || symbols === undefined) return null;
  const unique = [...new Set([...symbols].map((s) => String(s).trim().toUpperCase()))];
  const bad = unique.filter((s) => !SYMBOL_PATTERN.test(s));
  if (bad.length) throw new RangeError(`invalid symbol ${JSON.stringify(bad[0])}`);
  return unique.length ? unique.sort() : null;
}

/** {conflate, delay} as the gateway takes them; a field left out keeps `current`'s value.
 * Throws RangeError for a value the gateway would refuse. */
export function normalizeDelivery(options, current = { conflate: 0, delay: 0 }) {
  const delivery = {};
  for (const [name, [low, high]] of Object.entries(DELIVERY)) {
    const value = options?.[name] ?? current[name];
    if (!Number.isInteger(value) || (value !== 0 && (value < low || value > high))) {
      throw new RangeError(`${name} must be 0 or a whole number from ${low} to ${high}`);
    }
    delivery[name] = value;
  }
  return delivery;
}

let nextSub = 1;
const links = new Map(); // one per gateway and transport

/** This tab's end of a hub: a SharedWorker's port, or a MessageChannel to a local hub. */
class Link {
  constructor({ baseUrl, shared, maxSymbols, credentials, conflate, delay }) {
    this.options = { baseUrl, shared, maxSymbols, credentials, conflate, delay };
    this.baseUrl = baseUrl;
    this.maxSymbols = maxSymbols;
    this.credentials = credentials;
    this.delivery = { conflate, delay };
    this.position = ""; // the last id the hub reported: where another hub may resume
    this.subs = new Map();
    this.shared = false;
    this.port = null;
    if (shared && typeof SharedWorker === "function") this.connectShared();
    if (!this.port) this.connectLocal();
    addEventListener("pagehide", () => this.port.postMessage({ type: "bye" }));
    addEventListener("pageshow", (event) => {
      if (event.persisted) for (const sub of this.subs.values()) sub.send(); // back from bfcache
    });
  }

  connectShared() {
    try {
      const worker = new SharedWorker(new URL("./price-worker.js", import.meta.url), {
        type: "module",
        name: [
          `price-client/${PROTOCOL}`,
          this.baseUrl,
          this.maxSymbols,
          this.credentials,
          this.delivery.conflate,
          this.delivery.delay,
        ].join(" "),
      });
      worker.addEventListener("error", () => {
        // The worker script failed to load: fall back to this tab's own connection.
        if (!this.shared) return;
        this.connectLocal();
        for (const sub of this.subs.values()) sub.send();
      });
      this.listen(worker.port);
      this.shared = true;
      this.holdLifetimeLock();
    } catch {
      this.port = null; // cross-origin page, or workers disabled
    }
  }

  connectLocal() {
    const channel = new MessageChannel();
    const { baseUrl, maxSymbols, credentials } = this;
    new FeedHub({ baseUrl, maxSymbols, credentials, ...this.delivery }).attach(channel.port2);
    this.listen(channel.port1);
    this.shared = false;
  }

  listen(port) {
    this.port = port;
    port.onmessage = ({ data: message }) => {
      if (port !== this.port) return;
      if (message.type === "tick") {
        const { tick } = message;
        if (message.sub !== undefined) {
          this.subs.get(message.sub)?.deliver(tick); // a replay: not in stream order
        } else {
          this.position = tick.id;
          for (const sub of this.subs.values()) if (sub.wants(tick.symbol)) sub.deliver(tick);
        }
      } else if (message.type === "state") {
        if (message.state.lastEventId) this.position = message.state.lastEventId;
        for (const sub of this.subs.values()) sub.report(message.state);
      } else if (message.type === "ask") {
        this.answer(port, message);
      }
    };
    port.start();
  }

  /** Run a token or renew hook for the hub; any subscription of this tab that has one. */
  async answer(port, { ask, hook }) {
    const sub = [...this.subs.values()].find((candidate) => candidate.hooks[hook]);
    let value = null;
    try {
      value = sub ? await sub.hooks[hook]() : null;
    } catch (error) {
      reportError(error); // the page's bug; the feed carries on as if there were no hook
    }
    port.postMessage({ type: "answer", ask, value: value ?? null });
  }

  holdLifetimeLock() {
    // The worker cannot see a tab close; it can see a lock the tab held until then.
    // Web Locks need a secure context (https or localhost); elsewhere a tab's symbols
    // stay in the shared stream until the tab says goodbye on pagehide.
    if (!navigator.locks) return;
    const lock = `price-client-tab-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    navigator.locks.request(lock, () => {
      this.port.postMessage({ type: "lifetime", lock }); // only once held
      return new Promise(() => {});
    });
  }
}

class Subscription {
  constructor(link, symbols, onTick, onState, hooks) {
    this.link = link;
    this.hooks = hooks; // {token?, renew?}: functions of the page, run in this tab
    this.id = nextSub++;
    this.symbolSet = symbols && new Set(symbols);
    this.onTick = onTick;
    this.onState = onState;
    this.seen = new SeenIds(); // defensive: a tick is delivered once, whatever happens above
    this.state = { state: "connecting", lastEventId: "", delivery: null, shared: link.shared };
    this.closed = false;
    this.after = ""; // moved from another delivery's hub: the id to resume after there
  }

  /** The delivery asked for, {conflate, delay}; what applies is in `state.delivery`. */
  get requested() {
    return { ...this.link.delivery };
  }

  /** The symbols streamed (sorted), or null for every symbol. */
  get symbols() {
    return this.symbolSet && [...this.symbolSet];
  }

  /** Whether this tab shares its connection with other tabs. */
  get shared() {
    return this.link.shared;
  }

  /** Change the symbols: one new stream that resumes after the last id seen. */
  setSymbols(symbols) {
    const normalized = normalizeSymbols(symbols);
    this.symbolSet = normalized && new Set(normalized);
    this.send();
  }

  /**
   * Change the delivery (fields left out keep their value): one new stream. A new conflate
   * resumes after the last id seen; a new delay starts from that delay's latest prices.
   */
  setDelivery(options) {
    const delivery = normalizeDelivery(options, this.link.delivery);
    if (this.closed) return;
    const { conflate, delay } = this.link.delivery;
    if (delivery.conflate === conflate && delivery.delay === delay) return;
    const old = this.link;
    old.subs.delete(this.id);
    old.port.postMessage({ type: "unsubscribe", sub: this.id });
    this.link = linkFor({ ...old.options, ...delivery });
    this.link.subs.set(this.id, this);
    if (delivery.delay === delay) {
      this.after = old.position || this.state.lastEventId;
    } else {
      this.after = ""; // other times: ids seen before come again, and must be shown
      this.seen = new SeenIds();
    }
    this.send();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.link.subs.delete(this.id);
    this.link.port.postMessage({ type: "unsubscribe", sub: this.id });
    this.report({ state: "closed", lastEventId: this.state.lastEventId });
  }

  send() {
    if (this.closed) return;
    const auth = ["token", "renew"].filter((hook) => typeof this.hooks[hook] === "function");
    const message = { type: "subscribe", sub: this.id, symbols: this.symbols, auth };
    if (this.after) message.after = this.after;
    this.after = ""; // once: the hub now has the subscription
    this.link.port.postMessage(message);
  }

  wants(symbol) {
    return this.symbolSet === null || this.symbolSet.has(symbol);
  }

  deliver(tick) {
    if (!this.wants(tick.symbol) || !this.seen.add(tick.id)) return;
    call(this.onTick, tick);
  }

  report(state) {
    this.state = { ...state, shared: this.link.shared };
    call(this.onState, this.state);
  }
}

/** The link (one hub: one stream) for these options, shared by their subscriptions. */
function linkFor(options) {
  const { baseUrl, shared, maxSymbols, credentials, conflate, delay } = options;
  const key = `${baseUrl} ${shared} ${maxSymbols} ${credentials} ${conflate} ${delay}`;
  let link = links.get(key);
  if (!link) links.set(key, (link = new Link(options)));
  return link;
}

function call(callback, value) {
  try {
    callback?.(value);
  } catch (error) {
    reportError(error); // the page's bug must not stop the feed
  }
}

/**
 * Subscribe to live prices of `symbols` (null or [] for every symbol).
 *
 * options.baseUrl: the gateway (default: where this module was served from);
 * options.shared: false for a connection of this tab's own (default true);
 * options.maxSymbols: above this many, stream every symbol and filter here (default 100);
 * options.token: async () => a JWT sent as Authorization: Bearer, or null for none (the
 *   cookie, if any, still goes along); asked before each connection;
 * options.renew: async () => true once the token (cookie) has been renewed; called on a
 *   401 and when the gateway ends a stream because the token expired;
 * options.credentials: "include" to send the gateway's cookies to it from a page of
 *   another origin that its --cors-origins lists (default "same-origin");
 * options.conflate: ms, 0 (default: every tick) or 50-60000: at most one tick per symbol
 *   per interval, the latest value winning; options.delay: s, 0 (default) or 1-86400:
 *   prices that old. A token may impose more: state.delivery says what applies. Ids stay
 *   the ticks' own, so resuming stays exact. The same options share one stream.
 * Throws RangeError for a symbol outside the gateway's grammar, or a conflate or delay
 * outside its range.
 */
export function subscribe(symbols, onTick, onState, options = {}) {
  const normalized = normalizeSymbols(symbols);
  const baseUrl = new URL(options.baseUrl ?? DEFAULT_BASE, location.href).href;
  const shared = options.shared ?? true;
  const maxSymbols = options.maxSymbols ?? 100;
  const credentials = options.credentials ?? "same-origin";
  if (!CREDENTIALS.includes(credentials)) {
    throw new RangeError(`credentials must be one of ${CREDENTIALS.join(", ")}`);
  }
  const delivery = normalizeDelivery(options);
  const link = linkFor({ baseUrl, shared, maxSymbols, credentials, ...delivery });
  const hooks = { token: options.token, renew: options.renew };
  const sub = new Subscription(link, normalized, onTick, onState, hooks);
  link.subs.set(sub.id, sub);
  sub.send();
  return sub;
}
