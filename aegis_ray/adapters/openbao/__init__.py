"""OpenBao: the embedded server `aegis up` runs (server.py), the control plane's store of
tenants' secrets (store.py), and the node agent's redemption of wrapped reads (redeem.py)."""
