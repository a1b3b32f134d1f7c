"""The SSM-compatible API: AWS Systems Manager's Run Command operations, spoken in AWS's
JSON 1.1 protocol on the server's root, as a thin translation over the same services
the native API uses (docs/ssm-compat.md)."""
