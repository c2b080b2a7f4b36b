"""`ray up` cluster YAMLs: NodeConfig -> node types, and the offline checks of
`aegis cluster validate`."""
