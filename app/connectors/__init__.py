"""Connectors: one module per kind of hospital system. Only a connector knows its system's
native field names, codes and paging; it hands the rest of the hub canonical records."""
