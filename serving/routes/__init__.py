"""HTTP routes, one module per resource; they speak HTTP and call services."""
