"""The node's gRPC surface: the public `clearing.api.v1.MarginService` (TCP, optional TLS) and the
operator `clearing.admin.v1.AdminService` (UNIX socket, mode 0600).

Servers are grpcio thread-pool servers that read immutable snapshots (`node.api.snapshot`) built
from the `Store`; they never write to it. Entry points: `node.api.server.start_api_server`,
`node.api.admin.start_admin_server`, client helpers in `node.api.client`.
"""
