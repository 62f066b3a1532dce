"""Server code both services share: the SQLite store base with group commit,
the gRPC server bootstrap and its interceptor, authentication, the one
error type's base, settings helpers, the clock, time conversions, failure
budgets (S3), retention and file modes, and the development runner.

It is not part of the client package (``keyslot``): ``pip install keyslot``
gives the typed client and the CLI; ``keyslot[server]`` adds what the
services need to run.
"""
