"""Who may call what: certificates, caller identities, the one authorization table, TLS credentials.

Every room that serves or calls gRPC (routing's clients, regional nodes, the trek
coordinator, deploy's processes) or HTTP (the gateway, fault control: ``http_auth``)
asks this room; it imports only the contracts. ARCHITECTURE.md §8 says why the trust boundary is built this way.
"""

__all__ = ["certs", "credentials", "http_auth", "identity", "policy", "private_files", "server_auth", "tokens"]
