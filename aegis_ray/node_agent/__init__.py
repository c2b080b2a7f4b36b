"""The node agent: one long-lived supervisor of all agent containers on a machine.

`agent.py` is the supervisor itself (Docker only, no Ray); `actor.py` runs it as the node's Ray
actor. Import the modules, not this package: it loads neither Docker nor Ray.
"""
