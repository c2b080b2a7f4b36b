"""The Python client of the aegis API: one `Client` (and its async twin) over two transports.

    Client / AsyncClient      sdk/client.py   the methods, written once (sdk/operations.py)
    Transport                 sdk/transport.py  the seam: one operation in, a wire body out
    ├── RestTransport         sdk/rest.py     HTTP with httpx (sync and async)
    └── GrpcTransport         sdk/grpc.py     gRPC, replies turned into the REST bodies
    errors                    sdk/errors.py   everything the client raises
    discovery                 sdk/discovery.py  where the API is and which token, as the CLI

Results are the contract's models (aegis_ray/contract). Import it as `from aegis_ray import
Client`; this package imports the contract and the core, never the server (aegis_ray.api).
"""
