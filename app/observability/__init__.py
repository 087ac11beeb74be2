"""How the hub tells operators what it does: JSON logs carrying request and task ids."""
