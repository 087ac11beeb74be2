"""HL7 v2 for the hub: reading and checking messages, acknowledgements, and the MLLP listener.

Nothing here knows a system's field positions: connectors (``app.connectors.pharmacy``) map
the segments they receive. Parsing and MLLP framing are the pinned ``hl7`` library's.
"""
