"""Who may see what: JWT verification, keys, per-symbol grants."""
