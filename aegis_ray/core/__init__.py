"""The pure core: manifest and node models, placement with its explanations, the NodeConfig ->
Ray mapping, the registry merge and the watch-stream ordering.

Plain functions over data. Nothing here imports an adapter or ray, docker, asyncpg, temporalio,
grpc or fastapi; the import contract in `.importlinter` holds that in CI.
"""
