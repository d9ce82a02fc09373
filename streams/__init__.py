"""Redis side of DodoLens: key names, connections, encrypted media streams, events, consumer groups."""
