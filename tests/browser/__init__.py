"""Browser tests: the web console in a real headless Chromium (Selenium)."""
