"""Whole processes: crashes, restarts, the deployment, the reliability battery's short forms."""
