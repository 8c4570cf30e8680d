"""The data path: stored ticks framed once, a client's consumer spliced onto the live feed."""
