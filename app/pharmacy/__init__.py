"""System C, the pharmacy: HL7 v2 messages received, and the orders, dispenses and
administrations they carried."""
