// Live prices from the gateway for any page of its origin; one stream shared by all tabs.
//
//   import { subscribe } from "/static/price-client.js";
//   const sub = subscribe(["AAPL", "BRK.B"], (tick) => show(tick), (state) => status(state));
//   sub.setSymbols(["AAPL", "MSFT"]);   // one new stream, resuming after the last id seen
//   sub.close();
//
// tick:  {id, symbol, price, timestamp, source, data}. `price` is the exact text sent
//        ("189.230000"); `data` is the parsed event, extra fields included.
// state: {state, lastEventId, reason?, detail?, retryAt?, heardAt?, shared}, where state is
//        "connecting" | "live" | "reconnecting" | "reset" | "error" | "unauthorized" |
//        "forbidden" | "closed". A "reset" carries the gateway's reason: the position was
//        lost and prices start again from the latest stored ones. "unauthorized" (no valid
//        token, not renewed) and "forbidden" (a symbol the token does not allow) carry the
//        gateway's detail and are retried slowly.
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

/** Upper-cased, de-duplicated, validated symbols; null or [] mean every symbol. */
export function normalizeSymbols(symbols) {
  if (symbols === null || symbols === undefined) return null;
  const unique = [...new Set([...symbols].map((s) => String(s).trim().toUpperCase()))];
  const bad = unique.filter((s) => !SYMBOL_PATTERN.test(s));
  if (bad.length) throw new RangeError(`invalid symbol ${JSON.stringify(bad[0])}`);
  return unique.length ? unique.sort() : null;
}

let nextSub = 1;
const links = new Map(); // one per gateway and transport

/** This tab's end of a hub: a SharedWorker's port, or a MessageChannel to a local hub. */
class Link {
  constructor(baseUrl, { shared, maxSymbols, credentials }) {
    this.baseUrl = baseUrl;
    this.maxSymbols = maxSymbols;
    this.credentials = credentials;
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
        name: `price-client/${PROTOCOL} ${this.baseUrl} ${this.maxSymbols} ${this.credentials}`,
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
    new FeedHub({ baseUrl, maxSymbols, credentials }).attach(channel.port2);
    this.listen(channel.port1);
    this.shared = false;
  }

  listen(port) {
    this.port = port;
    port.onmessage = ({ data: message }) => {
      if (port !== this.port) return;
      if (message.type === "tick") {
        const { tick } = message;
        if (message.sub !== undefined) this.subs.get(message.sub)?.deliver(tick);
        else for (const sub of this.subs.values()) if (sub.wants(tick.symbol)) sub.deliver(tick);
      } else if (message.type === "state") {
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
    this.state = { state: "connecting", lastEventId: "", shared: link.shared };
    this.closed = false;
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
    this.link.port.postMessage({ type: "subscribe", sub: this.id, symbols: this.symbols, auth });
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
 *   another origin that its --cors-origins lists (default "same-origin").
 * Throws RangeError for a symbol outside the gateway's grammar.
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
  const key = `${baseUrl} ${shared} ${maxSymbols} ${credentials}`;
  let link = links.get(key);
  if (!link) links.set(key, (link = new Link(baseUrl, { shared, maxSymbols, credentials })));
  const hooks = { token: options.token, renew: options.renew };
  const sub = new Subscription(link, normalized, onTick, onState, hooks);
  link.subs.set(sub.id, sub);
  sub.send();
  return sub;
}
