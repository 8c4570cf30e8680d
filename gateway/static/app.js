// The live price page: wires the picker, the rate choice, the table and the status badge
// to one subscription, and keeps the choices in the page URL (?symbols=AAPL,MSFT&conflate=250).

import { ConnectionStatus } from "./status.js";
import { SymbolPicker } from "./picker.js";
import { PriceTable } from "./table.js";
import { SYMBOL_PATTERN, subscribe } from "./price-client.js";

const RECORD_LIMIT = 10000;
const RATES = [0, 250, 1000]; // conflate (ms) on offer: every tick, 4 a second, 1 a second
const $ = (id) => document.getElementById(id);

// What the page showed, for tests and for a developer's console: every tick once, in order.
const record = [];
const states = [];
window.__ticks = record;
window.__states = states;

function symbolsFromUrl() {
  const words = new URL(location.href).searchParams
    .getAll("symbols")
    .flatMap((value) => value.split(","))
    .map((word) => word.trim().toUpperCase())
    .filter(Boolean);
  return {
    valid: [...new Set(words.filter((word) => SYMBOL_PATTERN.test(word)))],
    invalid: words.filter((word) => !SYMBOL_PATTERN.test(word)),
  };
}

/** The rate chosen in the URL (?conflate=250), if it is one on offer; else every tick. */
function rateFromUrl() {
  const rate = Number(new URL(location.href).searchParams.get("conflate") ?? 0);
  return RATES.includes(rate) ? rate : 0;
}

function keepInUrl({ symbols, rate }) {
  const url = new URL(location.href);
  url.searchParams.delete("symbols");
  url.searchParams.delete("conflate");
  // Built by hand: URLSearchParams would write the commas as %2C.
  const rest = url.searchParams.toString();
  const query = [
    symbols.length ? `symbols=${symbols.join(",")}` : "",
    rate ? `conflate=${rate}` : "",
    rest,
  ].filter(Boolean);
  url.search = query.join("&");
  history.replaceState(null, "", url);
}

/** "4 a second", "1 a second", "1 every 2 s": a conflation interval (ms) for people. */
function rateText(ms) {
  if (!ms) return "every tick";
  if (1000 % ms === 0) return `${1000 / ms} a second`;
  return `1 every ${ms % 1000 ? `${ms} ms` : `${ms / 1000} s`}`;
}

/** "delayed 15 min", "delayed 30 s", "delayed 1 h": the gateway's Price-Delay (s). */
function delayText(seconds) {
  if (seconds < 60) return `delayed ${seconds} s`;
  if (seconds % 3600 === 0) return `delayed ${seconds / 3600} h`;
  const rest = seconds % 60;
  return `delayed ${Math.floor(seconds / 60)} min${rest ? ` ${rest} s` : ""}`;
}

/** What the gateway applies (state.delivery): the delay badge, and a note when a floor
 * of the user's token makes the updates slower than chosen. */
function showDelivery(delivery, chosenRate) {
  const badge = $("delay-badge");
  const delay = delivery?.delay ?? 0;
  const text = delay ? delayText(delay) : "";
  badge.hidden = delay === 0;
  badge.textContent = text;
  badge.title = text && `Prices are shown ${text.replace("delayed ", "")} after they were stored`;
  const conflate = delivery?.conflate ?? chosenRate;
  $("rate-note").textContent =
    conflate > chosenRate ? `Your access allows at most ${rateText(conflate)} per symbol.` : "";
}

/** What the gateway says about authentication: {auth, renewUrl}; no auth if unknown. */
async function loadPageConfig() {
  try {
    const response = await fetch(new URL("page-config", document.baseURI), { cache: "no-store" });
    if (response.ok) return await response.json();
  } catch {
    // an older gateway, or none right now: the stream's own answers will tell
  }
  return { auth: false, renewUrl: null };
}

/** Ask the site's login service for a fresh token cookie; true when it gave one. */
async function renewToken(config) {
  const { renewUrl } = await config;
  if (!renewUrl) return false;
  try {
    // The cookie is HttpOnly: only this request's answer can replace it, not our script.
    const response = await fetch(new URL(renewUrl, document.baseURI), {
      method: "POST",
      credentials: "include",
      cache: "no-store",
    });
    return response.ok;
  } catch {
    return false;
  }
}

async function loadKnownSymbols(picker) {
  try {
    const response = await fetch(new URL("symbols", document.baseURI), { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    picker.setKnown(await response.json());
    $("known-error").textContent = "";
  } catch (error) {
    $("known-error").textContent = `Stored symbols unavailable (${error.message}); type symbols instead.`;
  }
}

function main() {
  const status = new ConnectionStatus({
    root: $("connection"),
    label: $("state-label"),
    detail: $("state-detail"),
    heard: $("heard"),
    transport: $("transport"),
    notice: $("reset-notice"),
    noticeText: $("reset-text"),
    noticeClose: $("reset-close"),
  });
  const input = $("symbol-input");
  const picker = new SymbolPicker({
    form: $("picker"),
    input,
    chips: $("chips"),
    suggestions: $("suggestions"),
    datalist: $("known-symbols"),
    error: $("picker-error"),
    onChange: (symbols) => choose(symbols),
  });
  const table = new PriceTable(
    $("prices-body"),
    $("announcer"),
    (symbol) => picker.chosen.length && picker.remove(symbol),
    input,
  );

  const { valid, invalid } = symbolsFromUrl();
  if (invalid.length) picker.showError(`Ignored from the address: ${invalid.join(", ")}`);
  picker.set(valid);
  table.setSymbols(valid.length ? valid : null);
  const chosen = { symbols: valid, rate: rateFromUrl() };
  keepInUrl(chosen);
  const rates = $("rate");
  for (const radio of rates.querySelectorAll("input")) {
    radio.checked = Number(radio.value) === chosen.rate;
  }

  // Not awaited: subscribing does not wait for it, only a renewal does.
  const config = loadPageConfig();
  const subscription = subscribe(
    valid,
    (tick) => {
      record.push({ id: tick.id, symbol: tick.symbol, price: tick.price, at: Date.now() });
      if (record.length > RECORD_LIMIT) record.splice(0, record.length - RECORD_LIMIT);
      status.heardNow();
      table.update(tick);
    },
    (state) => {
      // Signed in again: the stored symbols the picker offers were refused before.
      if (state.state === "live" && states.at(-1) === "unauthorized") loadKnownSymbols(picker);
      if (states.at(-1) !== state.state) states.push(state.state);
      if (states.length > 1000) states.shift();
      status.show(state);
      if (state.delivery) showDelivery(state.delivery, chosen.rate);
    },
    { renew: () => renewToken(config), conflate: chosen.rate },
  );
  window.__subscription = subscription;

  function choose(symbols) {
    chosen.symbols = symbols;
    keepInUrl(chosen);
    table.setSymbols(symbols.length ? symbols : null);
    subscription.setSymbols(symbols);
  }

  // A new rate: one new stream, resuming after the last tick shown.
  rates.addEventListener("change", (event) => {
    chosen.rate = Number(event.target.value);
    keepInUrl(chosen);
    subscription.setDelivery({ conflate: chosen.rate });
    showDelivery(subscription.state.delivery, chosen.rate);
  });

  loadKnownSymbols(picker);
  input.addEventListener("focus", () => loadKnownSymbols(picker));
}

main();
