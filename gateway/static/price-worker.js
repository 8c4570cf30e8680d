// The SharedWorker behind price-client.js: one FeedHub, so every tab of this origin that
// subscribes with the same options shares one /stocks stream. Its name carries the
// protocol, the gateway URL and those options (symbol limit, credentials, conflate, delay).

import { FeedHub } from "./feed-hub.js";

const [, baseUrl, maxSymbols, credentials, conflate, delay] =
  /^price-client\/\d+ (\S+) (\d+) ([a-z-]+)(?: (\d+) (\d+))?$/.exec(self.name) ?? [];
const hub = new FeedHub({
  baseUrl: baseUrl ?? new URL("../", import.meta.url),
  maxSymbols: Number(maxSymbols ?? 100),
  credentials: credentials ?? "same-origin",
  conflate: Number(conflate ?? 0),
  delay: Number(delay ?? 0),
});

self.onconnect = (event) => hub.attach(event.ports[0]);
