"""The user, billing and storage event families: one transaction per event (see `each.py`)."""
