"""What a run reports: step metrics and their sinks, held-out evaluation, and the PNG/markdown reports."""
