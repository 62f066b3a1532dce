"""Server plumbing shared by the license and device services.

It lives in the `keyslot` package (clients/keyslot) so both services use one
implementation without a further top-level folder: clock, settings helpers,
authentication, the rich-error interceptor, the SQLite store base and the
server bootstrap.
"""
