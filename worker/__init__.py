"""pedro-worker: exactly-once credit and billing event worker for the Pedro AI app."""

__version__ = "0.1.0"
