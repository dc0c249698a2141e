"""kms-conformance: the KMS conformance suite, its reference host and client.

PYTEST_DONT_REWRITE: `kmsconf check` imports this package before it starts pytest, and pytest warns about an
installed plugin's package it finds imported already, unless the package says so here (it has no asserts to
rewrite).
"""
