"""The SSE gateway: JetStream prices to browsers, one consumer per client, exact resume."""
