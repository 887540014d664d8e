"""hubd's HTTP server."""
