"""Several daemons, one catalog: jobs, the watch list, blob locations, API tokens and the client
of a daemon."""
