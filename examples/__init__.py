"""Example chains (``*.json``) and a user job module (``pricing_jobs``) for jobchain."""
