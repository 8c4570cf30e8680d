// Types of price-client.js, the gateway's browser client (see its header comment).

/** One price. `price` is the exact text the publisher sent ("189.230000"), never a float. */
export interface PriceTick {
  id: string;
  symbol: string;
  price: string;
  timestamp: string;
  source: string;
  /** The parsed event, extra fields included. */
  data: { [field: string]: unknown };
}

export type ConnectionState =
  | "connecting"
  | "live"
  | "reconnecting"
  | "reset"
  | "error"
  | "unauthorized"
  | "forbidden"
  | "closed";

/** How ticks are delivered; 0 is off for both. */
export interface Delivery {
  /** Milliseconds: at most one tick per symbol per interval, the latest value winning
   * (0, or 50-60000). */
  conflate: number;
  /** Seconds: every tick this long after the gateway stored it (0, or 1-86400). */
  delay: number;
}

export interface PriceState {
  state: ConnectionState;
  /** The last event id seen: the next stream resumes after it. */
  lastEventId: string;
  /** What the gateway applies, from its Price-Conflate and Price-Delay answer headers: a
   * token may impose more than asked. null until a stream has opened (or from a gateway
   * without delivery control, when some was asked for). */
  delivery: Delivery | null;
  /** Why: a reset's reason ("position-lost", "stream-recreated"), a reconnect's cause. */
  reason?: string;
  /** The gateway's detail, for "reset", "error", "unauthorized" and "forbidden". */
  detail?: string;
  /** When the next attempt is due (ms since the epoch), while reconnecting. */
  retryAt?: number;
  /** When the gateway was last heard (ms since the epoch), while live. */
  heardAt?: number;
  /** Whether this tab shares its connection with other tabs (SharedWorker). */
  shared: boolean;
}

export interface SubscribeOptions {
  /** The gateway (default: where this module was served from). */
  baseUrl?: string | URL;
  /** false for a connection of this tab's own (default true: shared by all tabs). */
  shared?: boolean;
  /** Above this many symbols, stream every symbol and filter here (default 100). */
  maxSymbols?: number;
  /** A JWT sent as Authorization: Bearer, or null for none; asked before each connection. */
  token?: () => Promise<string | null> | string | null;
  /** Renew the token (cookie); true once renewed. Called on a 401 and on expiry. */
  renew?: () => Promise<boolean> | boolean;
  /** fetch's credentials mode; "include" for a page on another origin (default "same-origin"). */
  credentials?: "same-origin" | "include" | "omit";
  /** Milliseconds, 0 (default: every tick) or 50-60000: at most one tick per symbol per
   * interval, the latest value winning. */
  conflate?: number;
  /** Seconds, 0 (default) or 1-86400: prices that long after the gateway stored them. */
  delay?: number;
}

export interface Subscription {
  /** The symbols streamed (sorted), or null for every symbol. */
  readonly symbols: string[] | null;
  /** Whether this tab shares its connection with other tabs. */
  readonly shared: boolean;
  /** The last state reported to onState. */
  readonly state: PriceState;
  readonly closed: boolean;
  /** The delivery asked for; what the gateway applies is `state.delivery`. */
  readonly requested: Readonly<Delivery>;
  /** Change the symbols: one new stream that resumes after the last id seen. */
  setSymbols(symbols: Iterable<string> | null): void;
  /** Change the delivery (fields left out keep their value): one new stream. A new
   * conflate resumes after the last id seen; a new delay starts from its latest prices.
   * Throws RangeError for a value outside its range. */
  setDelivery(delivery: Partial<Delivery>): void;
  close(): void;
}

/** The gateway's symbol grammar, after upper-casing. */
export const SYMBOL_PATTERN: RegExp;

/** Upper-cased, de-duplicated, sorted symbols; null for every symbol. Throws RangeError. */
export function normalizeSymbols(symbols: Iterable<string> | null | undefined): string[] | null;

/** `delivery` checked against the gateway's ranges, fields left out taken from `current`
 * (default: 0, every tick at once). Throws RangeError naming a value out of range. */
export function normalizeDelivery(
  delivery?: Partial<Delivery> | null,
  current?: Delivery,
): Delivery;

/** Live prices of `symbols` (null or [] for every symbol). Throws RangeError for a symbol
 * outside the gateway's grammar, an unknown credentials mode, or a conflate or delay
 * outside its range. */
export function subscribe(
  symbols: Iterable<string> | null,
  onTick: (tick: PriceTick) => void,
  onState?: (state: PriceState) => void,
  options?: SubscribeOptions,
): Subscription;
