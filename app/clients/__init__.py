"""Machine clients: the credentials hospital systems use to call the hub."""
