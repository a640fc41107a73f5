"""What SREs run against a cluster: the load generator, chaos drills, the invariant audit, and fault proxies with their remote control."""

__all__ = ["audit", "chaos", "database_drills", "database_paths", "fault_control", "fault_proxy", "load"]
