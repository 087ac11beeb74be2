"""System C, the legacy pharmacy: it has no API, it pushes HL7 v2.5 messages over MLLP.

* :mod:`demo_systems.pharmacy.store`: the pharmacy's orders (one row per order: when it was
  ordered, dispensed and given), generated from the same world as Systems A and B.
* :mod:`demo_systems.pharmacy.messages`: each order as RDE^O11, RDS^O13 and RAS^O17 messages,
  plus the duplicates and malformed messages the demo stream sends on purpose.
* :mod:`demo_systems.pharmacy.sender`: ``python -m demo_systems send-pharmacy``, which streams
  them to the hub's MLLP listener and waits for each ACK.
"""
