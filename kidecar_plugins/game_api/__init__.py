"""The ``game_api`` plugin: the game reads, watches and writes its GameServer via the sidecar."""
