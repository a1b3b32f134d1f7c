"""The shapes of the REST API (/v1), shared by the server and the SDK.

Requests forbid unknown fields, so a typo is an error and not a silent no-op;
responses ignore unknown fields, so an older SDK can read a newer server.
"""
