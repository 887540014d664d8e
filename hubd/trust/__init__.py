"""Trust: what a signature, key, certificate or provenance statement proves, and what the
trust policy asks of a revision before it is used.

Below the use cases (record, verify, sign) and the audit, above the sources: nothing here
fetches or stores a revision.
"""
