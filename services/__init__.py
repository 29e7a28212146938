"""Processes and adapters around the log: entry points (api, cli, nats_intake), the service
layer (write), foreign formats, evidence, the embedded nats-server, and the composition root
(bootstrap)."""
