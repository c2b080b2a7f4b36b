"""PostgreSQL persistence (asyncpg): executions and their history, nodes, API tokens.

``db.connect`` opens a pool and migrates the schema; the ``*Store`` classes wrap that pool.
"""
