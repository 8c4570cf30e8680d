"""HTTP: the /stocks connection hand-over, sinks, request parsing, browser routes and headers."""
