"""The credit ledger: what an event does to a balance (decide) and how it is written (apply)."""
