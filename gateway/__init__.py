"""HTTP + WebSocket front door: sessions, chunks, events, tus, admin."""
