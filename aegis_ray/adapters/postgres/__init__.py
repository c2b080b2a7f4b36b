"""PostgreSQL persistence (asyncpg): executions and their history, nodes, API tokens; and the
embedded server `aegis up` starts.

``db.connect`` opens a pool and migrates the schema; the ``*Store`` classes wrap that pool.
"""
