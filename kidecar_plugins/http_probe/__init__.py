"""The ``http_probe`` plugin: drive the GameServer from the game's HTTP state endpoint."""
