"""The HTTP ingress: authenticate, validate, enqueue (docs/ingress.md). `create_app` builds it."""
