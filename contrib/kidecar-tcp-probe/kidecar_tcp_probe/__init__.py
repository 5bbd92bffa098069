"""kidecar-tcp-probe: a kidecar plugin driving a game server's state from its TCP ports.

Installed, it is the plugin ``tcp_probe`` (entry point in the ``kidecar`` group); see
:mod:`kidecar_tcp_probe.plugin` for the configuration and an example.
"""

from __future__ import annotations
