"""The console: its pages, its queries, and a real browser."""
