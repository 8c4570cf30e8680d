"""A demo price feed: random-walk ticks published to NATS JetStream through FastStream."""
