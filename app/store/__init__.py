"""The database layer: every SQL statement jobchain runs lives in this package."""
