"""The HTTP entry point (Litestar): routes by room, auth guards, the web console, the server."""
