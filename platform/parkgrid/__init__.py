"""ParkGrid platform: web app, API, persistence, chain adapter, tasks and CLI."""
