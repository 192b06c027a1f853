"""Worker threads and job types, with a real database and real worker pools."""
