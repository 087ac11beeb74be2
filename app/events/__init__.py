"""Canonical events (administration.recorded, dispense.recorded, order.placed, container.moved),
webhook subscriptions and their signed delivery. See docs/events.md."""
