"""gRPC code generated from protos/aegis/v1 (scripts/gen_protos.py) and the conversion between
REST bodies and messages (convert.py)."""
