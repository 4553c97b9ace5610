"""`tzn batch`: the engine's Localizer over many videos, on Ray (raybatch/batch.py)."""
