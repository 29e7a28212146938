"""The web console's parts: sessions and sign-in, command forms, live updates, charts.

`services/api/pages.py` assembles them with the pages into one router.
"""
