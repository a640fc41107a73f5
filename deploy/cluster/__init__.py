"""A whole cluster on one machine: the cluster file, ``ridgeline up``'s local cluster, status scraping and the demo.

``examples/`` holds cluster files to start from.
"""

__all__ = ["cluster_file", "demo", "ha_databases", "local_cluster", "scrape"]
