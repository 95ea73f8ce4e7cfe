"""Getting cover bytes from http(s) and local sources, safely."""
