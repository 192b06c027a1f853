"""The jobchain command against a real server."""
