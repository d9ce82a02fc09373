"""Workers: PyAV decode, frame selection, analysis (OpenAI), result sinks, cleanup."""
