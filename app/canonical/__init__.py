"""The hub's canonical medication schema and the value normalizations every connector uses
(NDC formats, unit codes, timestamps). Only connectors know native field names; everything
after them speaks this schema."""
