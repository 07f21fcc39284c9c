"""demo_app: a window that shows casare_workers' pools working live (``python -m demo_app``)."""
