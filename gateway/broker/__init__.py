"""The gateway's side of NATS: the connection, JetStream consumers, stream look-ups."""
