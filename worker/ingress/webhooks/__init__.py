"""Provider webhooks: each turns a provider's payload into one of our events and enqueues it.

Handlers never touch the database; the worker applies the events exactly once. Pure
`to_*_event` functions do the conversion, so every mapping rule is unit-tested.
"""
