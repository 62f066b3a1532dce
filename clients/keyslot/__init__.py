"""keyslot: generated gRPC stubs, the typed client, the CLI and the shared server runtime."""
