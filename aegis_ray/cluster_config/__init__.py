"""`ray up` cluster YAMLs: NodeConfig -> node types, and the offline checks of
`aegis cluster validate`.

    validate.py      the entry: parse, then the checks below, in order
    commands.py      command lists (the YAML `: ` trap, `ray stop`)
    ray_schema.py    Ray's own launcher checks and JSON schema
    cross_checks.py  aegis's checks on what Ray accepted (node types or hosts, commands, ports)
    node_types.py    NodeConfig -> a node type's `resources` and `labels`
    names.py         which resource names and labels a node type may carry
    identity.py      per-instance node id and orchestrator URL (`aegis node start` flags)
    results.py       the summary of a valid YAML, or its problems
"""
