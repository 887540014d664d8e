"""The catalog: what the store holds and where it came from, in SQLite or PostgreSQL.

By noun: ``models`` (the tables and the revision and job states), ``db`` (engines, migrations),
``revisions`` (repos, revisions, files, cards, refs), ``listing`` (pages of repos and revisions),
``nodes`` (the nodes sharing a catalog and the blobs each holds), ``views`` (JSON shapes).
"""
