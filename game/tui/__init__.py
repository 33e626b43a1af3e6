"""The Textual TUI. It holds no game logic: it calls the session and renders its state."""
