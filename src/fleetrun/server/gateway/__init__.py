"""The agent gateway: one WebSocket session per connected agent on this replica."""
