"""digitrec."""
