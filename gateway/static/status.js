// The connection badge: its state always visible, the id a reconnect resumes after, the
// reason of the last reset, and how long ago the gateway last sent anything.

const LABELS = {
  connecting: "Connecting",
  live: "Live",
  reconnecting: "Reconnecting",
  reset: "Reset",
  error: "Error",
  unauthorized: "Unauthorized",
  forbidden: "Forbidden",
  closed: "Closed",
};
// What the reader can do about a refusal; the gateway's detail follows.
const REMEDIES = {
  unauthorized: "Sign in again to see prices",
  forbidden: "Remove the symbols your account does not allow",
};

function ago(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  return seconds < 60 ? `${seconds} s ago` : `${Math.floor(seconds / 60)} min ago`;
}

export class ConnectionStatus {
  constructor({ root, label, detail, heard, transport, notice, noticeText, noticeClose }) {
    Object.assign(this, { root, label, detail, heard, transport, notice, noticeText });
    this.state = { state: "connecting", lastEventId: "" };
    this.heardAt = null;
    noticeClose.addEventListener("click", () => {
      notice.hidden = true;
    });
    setInterval(() => this.tickClock(), 1000);
  }

  /** Something arrived from the gateway (a tick); heartbeats come through show(). */
  heardNow() {
    this.heardAt = Date.now();
  }

  show(state) {
    const changed = state.state !== this.state.state;
    this.state = state;
    if (state.heardAt) this.heardAt = Math.max(this.heardAt ?? 0, state.heardAt);
    this.root.dataset.state = state.state;
    // Only the word is in the live region; the details below change too often to speak.
    if (changed) this.label.textContent = LABELS[state.state] ?? state.state;
    this.detail.replaceChildren(...this.details(state));
    this.transport.textContent = state.shared
      ? "one connection shared by this site's tabs"
      : "this tab's own connection";
    if (state.state === "reset") {
      const detail = (state.detail || "its position was lost").replace(/\.?$/, ".");
      this.noticeText.textContent =
        `The gateway reset the stream (${state.reason}): ${detail} ` +
        "Ticks from before the reset may be missing from the table and sparklines.";
      this.notice.dataset.reason = state.reason;
      this.notice.hidden = false;
    }
    this.tickClock();
  }

  details(state) {
    const parts = [];
    const text = (value) => document.createTextNode(value);
    if (state.state === "reset") parts.push(text(`(${state.reason})`));
    if ((state.state === "reconnecting" || state.state === "connecting") && state.lastEventId) {
      const id = document.createElement("code");
      id.className = "last-id";
      id.textContent = state.lastEventId;
      parts.push(text("resuming after "), id);
    }
    if (state.state === "reconnecting" && state.reason) parts.push(text(` \u00B7 ${state.reason}`));
    if (state.state === "error" && state.detail) parts.push(text(state.detail));
    if (Object.hasOwn(REMEDIES, state.state)) {
      parts.push(text(`${REMEDIES[state.state]}${state.detail ? ` (${state.detail})` : ""}.`));
    }
    return parts;
  }

  tickClock() {
    const { state, retryAt } = this.state;
    let text = this.heardAt ? `last heard ${ago(Date.now() - this.heardAt)}` : "nothing heard yet";
    if ((state === "reconnecting" || Object.hasOwn(REMEDIES, state)) && retryAt) {
      const wait = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      text += ` \u00B7 retry in ${wait} s`;
    }
    this.heard.textContent = text;
  }
}
