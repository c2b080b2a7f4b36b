"""The Python client of the aegis API (REST and gRPC transports)."""
