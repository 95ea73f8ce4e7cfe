"""Pure domain logic: manifests, grid geometry, keys, fingerprints, records. No I/O."""
