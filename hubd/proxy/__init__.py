"""The pull-through (``[proxy] enabled``): a daemon serving repos it lacks, fetched on demand,
vetted before any byte and verified before any byte is at rest (pull, resolver, flight)."""
