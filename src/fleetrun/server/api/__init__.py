"""The REST API under /v1: one router per resource; routes are thin."""
