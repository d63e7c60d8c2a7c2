"""Notifications to the app: signed webhooks from a transactional outbox (docs/notifications.md).

    notices.py   what each change notifies (pure rules)
    config.py    endpoints, thresholds (parsed settings)
    outbox.py    writes notices in the caller's transaction
    dispatch.py  delivers them (`pedro-worker notify`)
"""
