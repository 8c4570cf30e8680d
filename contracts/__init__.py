"""The contract shared by publishers and the gateway: symbols, ticks, event ids, the stream."""
