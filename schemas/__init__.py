"""Event, result and API models: the contract between clients, gateway, processors and analysts."""
