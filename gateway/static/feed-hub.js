// One PriceFeed shared by every subscription that talks to this hub over a MessagePort:
// the tabs of a SharedWorker, or one tab's own subscriptions when SharedWorker is
// missing. The feed streams the union of their symbols, with one delivery (every tick, or
// conflated, or delayed: a hub per delivery); each port gets the ticks its subscriptions
// want, and a new subscription first gets the recent ticks already here.

import { PriceFeed } from "./feed.js";

export const PROTOCOL = 3; // bump when the messages below change
const HISTORY = 60; // ticks kept per symbol, replayed to a new subscription (sparklines)
const COALESCE_MS = 30; // symbol changes this close together open one stream, not several
// A hub left without subscriptions (say, the only tab reloading) keeps its position this
// long, so the next subscription resumes with no gap; later it starts from the latest.
const KEEP_POSITION_MS = 30000;
// A tab asked for a token or a renewal answers within this, or counts as having none
// (it may have closed without a word).
const ASK_TIMEOUT_MS = 15000;

// Messages, tab -> hub:
//   {type: "subscribe", sub, symbols: string[] | null, auth?: ("token" | "renew")[], after?}
//                                                         add or change a subscription; auth
//                                                         lists the hooks its page gave; after:
//                                                         the last id it saw on another hub
//   {type: "answer", ask, value}                          a hook's result (token, or renewed)
//   {type: "unsubscribe", sub}
//   {type: "bye"}                                         the tab is going away
//   {type: "lifetime", lock}                              a Web Lock the tab holds until it dies
// hub -> tab:
//   {type: "tick", tick, sub?}    for the tab's subscriptions that want tick.symbol (or just `sub`)
//   {type: "state", state}        state.delivery: the gateway's effective {conflate, delay}
//   {type: "ask", ask, hook: "token" | "renew"}   call that hook of one of the tab's subscriptions

export class FeedHub {
  constructor({ baseUrl, maxSymbols, credentials, conflate = 0, delay = 0 }) {
    this.ports = new Map(); // port -> Map(sub -> Set of symbols | null for all)
    this.hooks = new Map(); // port -> Map(sub -> hooks its page gave: ["token", "renew"])
    this.asks = new Map(); // ask id -> resolve, until the tab answers
    this.nextAsk = 1;
    this.history = new Map(); // symbol -> recent {tick, n}, oldest first
    this.arrivals = 0; // n: the order ticks came in, across symbols
    this.wanted = null; // symbols streamed, or null for all
    this.timer = null;
    this.idleSince = null;
    this.state = { state: "connecting", lastEventId: "" };
    this.feed = new PriceFeed({
      baseUrl,
      maxSymbols,
      credentials,
      conflate,
      delay,
      // Hooks are functions of a page: the feed (perhaps in a SharedWorker) asks a tab.
      auth: { token: () => this.ask("token"), renew: () => this.ask("renew") },
      onTick: (tick) => this.tick(tick),
      onState: (state) => {
        this.state = state;
        for (const port of this.ports.keys()) port.postMessage({ type: "state", state });
      },
    });
  }

  attach(port) {
    this.ports.set(port, new Map());
    port.onmessage = (event) => this.message(port, event.data);
    port.start?.();
  }

  detach(port) {
    this.hooks.delete(port);
    if (!this.ports.delete(port)) return;
    this.schedule();
  }

  message(port, message) {
    if (message.type === "answer") {
      this.asks.get(message.ask)?.(message.value);
      return;
    }
    const subs = this.ports.get(port) ?? new Map();
    if (!this.ports.has(port)) this.ports.set(port, subs); // back from the bfcache
    if (message.type === "subscribe") {
      this.expireIdle();
      const before = subs.get(message.sub);
      const wanted = message.symbols === null ? null : new Set(message.symbols);
      const idle = this.wantedUnion() === undefined;
      const moved = message.after && before === undefined;
      subs.set(message.sub, wanted);
      this.setHooks(port, message.sub, message.auth ?? []);
      if (moved && idle) this.startAfter(message.after);
      port.postMessage({ type: "state", state: this.stateForNew() });
      if (moved) this.replayAfter(port, message.sub, message.after);
      else this.replay(port, message.sub, before, wanted);
      this.schedule();
    } else if (message.type === "unsubscribe") {
      subs.delete(message.sub);
      this.setHooks(port, message.sub, []);
      this.schedule();
    } else if (message.type === "bye") {
      this.detach(port);
    } else if (message.type === "lifetime" && globalThis.navigator?.locks) {
      // Granted only once the tab's own hold on the lock ends: the tab has closed or
      // crashed, which a MessagePort never reports.
      navigator.locks.request(message.lock, async () => this.detach(port));
    }
  }

  setHooks(port, sub, hooks) {
    let subs = this.hooks.get(port);
    if (!subs) this.hooks.set(port, (subs = new Map()));
    if (hooks.length) subs.set(sub, hooks);
    else subs.delete(sub);
  }

  /** A hook's result from the first tab that has it; null when none does or answers. */
  ask(hook) {
    const port = [...this.hooks].find(([, subs]) =>
      [...subs.values()].some((hooks) => hooks.includes(hook)),
    )?.[0];
    if (!port) return Promise.resolve(null);
    const ask = this.nextAsk++;
    return new Promise((resolve) => {
      const done = (value) => {
        clearTimeout(timer);
        this.asks.delete(ask);
        resolve(value);
      };
      const timer = setTimeout(() => done(null), ASK_TIMEOUT_MS);
      this.asks.set(ask, done);
      port.postMessage({ type: "ask", ask, hook });
    });
  }

  /** A subscription moved here from another delivery's hub, and nobody else streams
   * here: start after the last id it saw, so the switch neither skips nor repeats a tick
   * (what this hub kept from earlier would replay older prices). */
  startAfter(after) {
    this.feed.stop();
    this.feed.forget();
    this.feed.resumeAfter(after);
    this.history.clear();
  }

  /** The state a new subscription starts with: a stopped feed is about to start again,
   * so not "closed" in the meantime. */
  stateForNew() {
    if (this.state.state !== "closed") return this.state;
    const { opened, lastEventId, delivery } = this.feed;
    return { state: opened ? "reconnecting" : "connecting", lastEventId, delivery };
  }

  /** A subscription moved here while others stream: replay what came after `after` when
   * this hub has seen it; otherwise it joins where the stream is (replaying older ticks
   * could overwrite newer prices it already has). */
  replayAfter(port, sub, after) {
    const recent = [...this.history.values()].flat().sort((a, b) => a.n - b.n);
    const at = recent.findIndex((entry) => entry.tick.id === after);
    if (at < 0) return;
    for (const { tick } of recent.slice(at + 1)) port.postMessage({ type: "tick", tick, sub });
  }

  replay(port, sub, before, wanted) {
    const isNew = (symbol) => before === undefined || (before !== null && !before.has(symbol));
    const symbols = wanted === null ? [...this.history.keys()] : [...wanted];
    for (const symbol of symbols) {
      if (!isNew(symbol)) continue;
      for (const { tick } of this.history.get(symbol) ?? []) {
        port.postMessage({ type: "tick", tick, sub });
      }
    }
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.apply(), COALESCE_MS);
  }

  wantedUnion() {
    let any = false;
    const symbols = new Set();
    for (const subs of this.ports.values()) {
      for (const wanted of subs.values()) {
        if (wanted === null) return null;
        any = true;
        for (const symbol of wanted) symbols.add(symbol);
      }
    }
    return any ? [...symbols].sort() : undefined;
  }

  apply() {
    const union = this.wantedUnion();
    if (union === undefined) {
      this.idleSince ??= Date.now();
      this.feed.stop();
      return;
    }
    this.expireIdle();
    this.idleSince = null;
    if (union !== null) {
      // History of a symbol nobody streams would go stale: ticks after it are not read.
      const keep = new Set(union);
      for (const symbol of this.history.keys()) if (!keep.has(symbol)) this.history.delete(symbol);
    }
    this.wanted = union && new Set(union);
    this.feed.setSymbols(union);
  }

  expireIdle() {
    if (this.idleSince !== null && Date.now() - this.idleSince > KEEP_POSITION_MS) {
      this.feed.forget();
      this.history.clear();
      this.idleSince = null;
    }
  }

  tick(tick) {
    // Past the gateway's symbol limit the feed streams everything: keep only what is wanted.
    if (this.wanted && !this.wanted.has(tick.symbol)) return;
    let recent = this.history.get(tick.symbol);
    if (!recent) this.history.set(tick.symbol, (recent = []));
    recent.push({ tick, n: this.arrivals++ });
    if (recent.length > HISTORY) recent.shift();
    for (const [port, subs] of this.ports) {
      for (const wanted of subs.values()) {
        if (wanted === null || wanted.has(tick.symbol)) {
          port.postMessage({ type: "tick", tick });
          break;
        }
      }
    }
  }
}
