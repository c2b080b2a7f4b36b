"""One machine of the cluster: `aegis up`, `aegis node start/stop` and the default NodeConfig."""
