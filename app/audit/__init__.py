"""The append-only audit trail of every request and job."""
