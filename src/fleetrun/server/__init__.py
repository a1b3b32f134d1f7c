"""The control plane: REST API, agent gateway, dispatcher, storage."""
