// The symbol picker: type symbols (several at once, comma- or space-separated) or pick
// from those the stream knows; chosen ones are chips that a button or Backspace removes.

import { SYMBOL_PATTERN } from "./price-client.js";

const SUGGESTIONS = 24; // buttons shown; the datalist offers every known symbol

export class SymbolPicker {
  constructor({ form, input, chips, suggestions, datalist, error, onChange }) {
    Object.assign(this, { form, input, chips, suggestions, datalist, error, onChange });
    this.chosen = [];
    this.known = [];
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.addTyped();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Backspace" && input.value === "" && this.chosen.length) {
        this.remove(this.chosen.at(-1));
      }
    });
    chips.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-symbol]");
      if (button) this.remove(button.dataset.symbol, true);
    });
    suggestions.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-symbol]");
      if (!button) return;
      const at = [...suggestions.children].indexOf(button);
      this.add([button.dataset.symbol]);
      (suggestions.children[at] ?? suggestions.lastElementChild ?? input).focus();
    });
  }

  get symbols() {
    return [...this.chosen];
  }

  /** Show `symbols` as chosen, without telling onChange (the caller already knows). */
  set(symbols) {
    this.chosen = [...new Set(symbols)];
    this.render();
  }

  addTyped() {
    const words = this.input.value.split(/[\s,]+/).filter(Boolean);
    const valid = [];
    const invalid = [];
    for (const word of words) {
      (SYMBOL_PATTERN.test(word.toUpperCase()) ? valid : invalid).push(word);
    }
    this.showError(
      invalid.length
        ? `Not a symbol: ${invalid.join(", ")}. A symbol is 1 to 16 of A\u2013Z, 0\u20139, \u201c.\u201d and \u201c-\u201d.`
        : "",
    );
    this.input.value = invalid.join(" ");
    this.add(valid.map((word) => word.toUpperCase()));
  }

  showError(text) {
    this.error.textContent = text;
    this.input.setAttribute("aria-invalid", String(Boolean(text)));
  }

  add(symbols) {
    const fresh = symbols.filter((symbol) => !this.chosen.includes(symbol));
    if (!fresh.length) return;
    this.chosen.push(...fresh);
    this.render();
    this.onChange(this.symbols);
  }

  remove(symbol, fromButton = false) {
    const at = this.chosen.indexOf(symbol);
    if (at < 0) return;
    this.chosen.splice(at, 1);
    this.render();
    this.onChange(this.symbols);
    // Keep the keyboard where it was: on the next chip's button, or back in the input.
    const next = this.chips.querySelectorAll("button[data-symbol]")[at];
    if (fromButton && next) next.focus();
    else if (fromButton || document.activeElement === document.body) this.input.focus();
  }

  setKnown(symbols) {
    this.known = symbols;
    this.datalist.replaceChildren(
      ...symbols.map((symbol) => Object.assign(document.createElement("option"), { value: symbol })),
    );
    this.renderSuggestions();
  }

  render() {
    const items = this.chosen.map((symbol) => {
      const li = document.createElement("li");
      li.className = "chip";
      const name = document.createElement("span");
      name.textContent = symbol;
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.symbol = symbol;
      button.setAttribute("aria-label", `Remove ${symbol}`);
      button.textContent = "\u00D7";
      li.append(name, button);
      return li;
    });
    if (!items.length) {
      const all = document.createElement("li");
      all.className = "chip all";
      all.textContent = "All symbols";
      items.push(all);
    }
    this.chips.replaceChildren(...items);
    this.renderSuggestions();
  }

  renderSuggestions() {
    const open = this.known.filter((symbol) => !this.chosen.includes(symbol));
    const buttons = open.slice(0, SUGGESTIONS).map((symbol) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "suggestion";
      button.dataset.symbol = symbol;
      button.setAttribute("aria-label", `Add ${symbol}`);
      button.textContent = `+ ${symbol}`;
      return button;
    });
    this.suggestions.replaceChildren(...buttons);
    this.suggestions.hidden = buttons.length === 0;
  }
}
