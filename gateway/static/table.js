// The live table: one row per symbol with its exact last price, change since the first
// price this page saw, a sparkline, tick time and source. Only the focused row speaks to
// screen readers, so a busy feed does not drown them.

import { formatSigned, parseDecimal, percentChange, sign, subtract } from "./decimal.js";
import { createSparkline, drawSparkline } from "./sparkline.js";

const HISTORY = 60;
const ARROWS = { 1: "\u25B2", "-1": "\u25BC", 0: "" }; // ▲ ▼: direction without colour
const WORDS = { 1: "up", "-1": "down", 0: "unchanged" };
const clock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  fractionalSecondDigits: 3,
  hour12: false,
});

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function direction(node, value) {
  node.classList.toggle("up", value > 0);
  node.classList.toggle("down", value < 0);
}

export class PriceTable {
  /**
   * @param {HTMLTableSectionElement} body
   * @param {HTMLElement} announcer  an aria-live="polite" region
   * @param {(symbol: string) => void} onRemove  Delete pressed on a row
   * @param {HTMLElement} fallbackFocus  where focus goes when the last row leaves
   */
  constructor(body, announcer, onRemove, fallbackFocus) {
    this.body = body;
    this.announcer = announcer;
    this.onRemove = onRemove;
    this.fallbackFocus = fallbackFocus;
    this.rows = new Map();
    this.chosen = null;
    body.addEventListener("keydown", (event) => this.key(event));
  }

  /** Show `symbols` in this order (rows wait for their first tick), or null for any symbol. */
  setSymbols(symbols) {
    this.chosen = symbols && new Set(symbols);
    for (const symbol of [...this.rows.keys()]) {
      if (this.chosen && !this.chosen.has(symbol)) this.remove(symbol);
    }
    const order = symbols ?? [...this.rows.keys()].sort();
    const rows = order.map((symbol) => this.row(symbol).tr);
    if (rows.every((tr, i) => this.body.children[i] === tr)) return;
    const focused = document.activeElement; // moving a row blurs it
    this.body.append(...rows);
    if (this.body.contains(focused)) focused.focus();
  }

  remove(symbol) {
    const row = this.rows.get(symbol);
    if (!row) return;
    const focused = row.tr.contains(document.activeElement);
    const next = row.tr.nextElementSibling ?? row.tr.previousElementSibling;
    row.tr.remove();
    this.rows.delete(symbol);
    if (focused) (next ?? this.fallbackFocus).focus();
  }

  row(symbol) {
    let row = this.rows.get(symbol);
    if (row) return row;
    const tr = element("tr");
    tr.tabIndex = 0;
    tr.dataset.symbol = symbol;
    const head = element("th", "symbol", symbol);
    head.scope = "row";
    const price = element("td", "price");
    const arrow = element("span", "arrow");
    arrow.setAttribute("aria-hidden", "true");
    const value = element("span", "value", "\u2014");
    const said = element("span", "visually-hidden");
    price.append(arrow, value, said);
    const change = element("td", "change num");
    const percent = element("td", "percent num");
    const spark = element("td", "spark");
    const svg = createSparkline(`${symbol}: no prices yet`);
    spark.append(svg);
    const time = element("td", "time");
    const stamp = element("time", "", "waiting for a tick");
    time.append(stamp);
    const source = element("td", "source");
    tr.append(head, price, change, percent, spark, time, source);
    row = { symbol, tr, price, arrow, value, said, change, percent, svg, stamp, source };
    row.first = row.last = null;
    row.values = [];
    this.rows.set(symbol, row);
    if (this.chosen === null) this.insertSorted(tr, symbol);
    else this.body.append(tr);
    return row;
  }

  insertSorted(tr, symbol) {
    for (const other of this.body.children) {
      if (other.dataset.symbol > symbol) {
        other.before(tr);
        return;
      }
    }
    this.body.append(tr);
  }

  update(tick) {
    if (this.chosen && !this.chosen.has(tick.symbol)) return;
    const row = this.row(tick.symbol);
    const price = parseDecimal(tick.price);
    const move = price && row.last ? sign(subtract(price, row.last)) : 0;
    if (price && !row.first) row.first = price;
    if (price) row.last = price;

    row.value.textContent = tick.price; // the digits as sent
    row.arrow.textContent = ARROWS[move];
    row.said.textContent = move ? ` ${WORDS[move]}` : "";
    direction(row.price, move);
    if (move) this.flash(row.price, move);

    const since = row.first && price ? subtract(price, row.first) : null;
    const trend = since ? sign(since) : 0;
    row.change.textContent = since ? `${ARROWS[trend]} ${formatSigned(since)}`.trim() : "";
    row.percent.textContent = since ? percentChange(since, row.first) : "";
    direction(row.change, trend);
    direction(row.percent, trend);

    const number = Number(tick.price);
    if (Number.isFinite(number)) {
      row.values.push(number);
      if (row.values.length > HISTORY) row.values.shift();
    }
    const low = Math.min(...row.values);
    const high = Math.max(...row.values);
    drawSparkline(
      row.svg,
      row.values,
      `${tick.symbol}, last ${row.values.length} prices, from ${low} to ${high}`,
    );
    direction(row.svg, trend);

    const at = new Date(String(tick.timestamp).replace(/(\.\d{3})\d+/, "$1"));
    row.stamp.dateTime = tick.timestamp;
    row.stamp.textContent = Number.isNaN(at.getTime()) ? String(tick.timestamp) : clock.format(at);
    row.source.textContent = tick.source ?? "";
    row.tr.dataset.id = tick.id;

    if (row.tr.contains(document.activeElement)) {
      this.announcer.textContent =
        `${tick.symbol} ${tick.price}` +
        (since ? `, ${WORDS[trend]} ${row.percent.textContent} since first seen` : "");
    }
  }

  flash(cell, move) {
    cell.classList.remove("flash-up", "flash-down");
    void cell.offsetWidth; // restart the animation when the same direction repeats
    cell.classList.add(move > 0 ? "flash-up" : "flash-down");
  }

  key(event) {
    const tr = event.target.closest("tr");
    if (!tr) return;
    const rows = [...this.body.rows];
    const at = rows.indexOf(tr);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1 };
    if (event.key in moves) {
      rows[Math.max(0, Math.min(rows.length - 1, moves[event.key]))]?.focus();
      event.preventDefault();
    } else if (event.key === "Delete" || event.key === "Backspace") {
      this.onRemove(tr.dataset.symbol);
      event.preventDefault();
    }
  }
}
