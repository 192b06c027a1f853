"""The store on SQLite and PostgreSQL: transitions, claims, joins, races, faults, migrations."""
