// The SharedWorker behind price-client.js: one FeedHub, so every tab of this origin that
// subscribes shares one /stocks stream. Its name carries the gateway URL and protocol.

import { FeedHub } from "./feed-hub.js";

const [, baseUrl, maxSymbols, credentials] =
  /^price-client\/\d+ (\S+) (\d+) ([a-z-]+)$/.exec(self.name) ?? [];
const hub = new FeedHub({
  baseUrl: baseUrl ?? new URL("../", import.meta.url),
  maxSymbols: Number(maxSymbols ?? 100),
  credentials: credentials ?? "same-origin",
});

self.onconnect = (event) => hub.attach(event.ports[0]);
