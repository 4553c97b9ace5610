"""Clip features from decoded frames: the one clip windower (windows.py) and the extractor (extractor.py)."""
