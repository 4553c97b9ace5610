"""Pictures of answers: the timeline of one video (viz/timeline.py)."""
