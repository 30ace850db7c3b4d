"""Tests that drive the app in a real headless browser (Chromium from Debian)."""
